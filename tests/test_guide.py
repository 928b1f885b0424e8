"""The guide's deployment, rendered from profiles/deepseek-v3.1-cp-1p1d.yaml, equals the guide.

The guide's own shell scripts (tests/fixtures/, a verbatim copy of ../shared/seed/) are run by `sh`
with `vllm` and `python` replaced by a recorder, so shell quoting and variables are interpreted
exactly as an operator's shell would; our rendered scripts are run the same way.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.profile import load_profile
from cpconsole.core.render import render_script

from .conftest import FIXTURES, PROFILES, run_interactive_bash, run_sh, shell_baseline
from .standins import install_docker_stand_in, vllm_ascend_image

GUIDE = (FIXTURES / "guide-long-sequence-cp-deepseek.txt").read_text()
PROFILE = PROFILES / "deepseek-v3.1-cp-1p1d.yaml"


def guide_scripts() -> dict[str, str]:
    launch = re.findall(r"^nic_name=.*?^}'$", GUIDE, re.M | re.S)
    proxy = re.search(r"^python load_balance_proxy_server_example\.py \\\n(?:.*\\\n)*.*$", GUIDE, re.M)
    assert len(launch) == 3 and proxy, "the guide's layout changed"
    return {"prefill-0": launch[0], "prefill-1": launch[1], "decode-0": launch[2], "proxy": proxy.group(0)}


def normalise(argv: list[str]) -> tuple[list[str], Counter[tuple[str, str]]]:
    """Positional words, and (flag, value) pairs with JSON values parsed and `_` read as `-`.

    vLLM's argument parser reads `--compilation_config` as `--compilation-config`, so do we.
    """
    positional: list[str] = []
    pairs: Counter[tuple[str, str]] = Counter()
    flag: str | None = None
    for word in argv:
        if word.startswith("--"):
            if flag is not None:
                pairs[(flag, "")] += 1
            flag = word.replace("_", "-")
        elif flag is None:
            positional.append(word)
        else:
            try:
                value = json.loads(word)
                canonical = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else word
            except ValueError:
                canonical = word
            pairs[(flag, canonical)] += 1
            flag = None
    if flag is not None:
        pairs[(flag, "")] += 1
    return positional, pairs


@pytest.fixture
def plan() -> LaunchPlan:
    return build_plan(load_profile(PROFILE))


@pytest.mark.parametrize("name", ["prefill-0", "prefill-1", "decode-0", "proxy"])
def test_rendered_process_equals_the_guide(
    name: str, plan: LaunchPlan, recorder_bin: Callable[..., Path], tmp_path: Path
) -> None:
    bin_dir = recorder_bin("recorder")
    baseline = shell_baseline(bin_dir)
    program = "python" if name == "proxy" else "vllm"
    guide = run_sh(f'{program}() {{ exec recorder "$@"; }}\n{guide_scripts()[name]}', path_first=bin_dir)
    guide_env = {k: v for k, v in guide["env"].items() if k not in baseline}

    proc = plan.process(name)
    assert proc.env_dict == guide_env
    assert proc.argv[0] == program
    assert normalise(list(proc.argv[1:])) == normalise(guide["argv"])


@pytest.mark.parametrize("name", ["prefill-0", "prefill-1", "decode-0", "proxy"])
def test_rendered_script_starts_the_process_as_the_guides_shell_does(
    name: str, plan: LaunchPlan, recorder_bin: Callable[..., Path], tmp_path: Path
) -> None:
    # The guide types its script into `docker exec -it vllm-ascend bash`: an interactive bash that
    # reads the image's ~/.bashrc. Ours runs through docker exec (which reads none of it) in the
    # stand-in of the image: program, arguments, working directory and environment must match.
    bin_dir = recorder_bin("recorder", "vllm", "python")
    install_docker_stand_in(bin_dir)
    proc = plan.process(name)
    assert proc.container == "vllm-ascend" and proc.container_pidfile
    containers, image = tmp_path / "containers", tmp_path / "image"
    containers.mkdir()
    image_env = vllm_ascend_image(containers, "vllm-ascend", image)
    workdir = image / (proc.cwd or "/workspace").lstrip("/")  # its own, else the image's WORKDIR
    workdir.mkdir(parents=True, exist_ok=True)  # the image has the example proxy's folder
    try:
        got = run_sh(render_script(proc), path_first=bin_dir, env={"DOCKER_STAND_IN_DIR": str(containers)})
    finally:
        Path(proc.container_pidfile).unlink(missing_ok=True)  # the stand-in's container is this machine
    program = "python" if name == "proxy" else "vllm"
    guide = run_interactive_bash(
        f'{program}() {{ exec recorder "$@"; }}\n{guide_scripts()[name]}',
        env={**image_env, "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(image / "root")},
        cwd=workdir,
    )
    assert got["argv"] == list(proc.argv[1:]) and normalise(got["argv"]) == normalise(guide["argv"])
    assert got["cwd"] == guide["cwd"] == str(workdir)
    shells = {"SHLVL", "_", "PWD", "OLDPWD"}  # what each shell sets for itself
    ours, theirs = ({k: v for k, v in e["env"].items() if k not in shells} for e in (got, guide))
    assert ours == theirs
    # the image's ~/.bashrc was read: jemalloc preloaded, the driver's devlib on the library path
    assert "libjemalloc.so.2" in ours["LD_PRELOAD"] and ours["LD_LIBRARY_PATH"].endswith("/usr/local/lib")


def test_engine_ids_and_headless_as_in_the_guide(plan: LaunchPlan) -> None:
    ids = {p.name: json.loads(p.argv[-1])["engine_id"] for p in plan.processes if p.role != "proxy"}
    assert ids == {"prefill-0": "0", "prefill-1": "1", "decode-0": "3"}
    assert [p.name for p in plan.processes if p.headless] == ["prefill-1"]
    assert [(p.name, p.http_port) for p in plan.processes if p.http_port] == [
        ("prefill-0", 8004),
        ("decode-0", 8004),
        ("proxy", 8005),
    ]


def test_kv_listener_ranges_follow_the_rank_layout(plan: LaunchPlan) -> None:
    kv = {p.name: [(u.start, u.end) for u in p.ports if u.kind == "kv"] for p in plan.processes}
    assert kv == {
        "prefill-0": [(30000, 30015)],
        "prefill-1": [(30016, 30031)],
        "decode-0": [(30200, 30215)],
        "proxy": [],
    }


def test_validate_reports_the_guides_known_port_problem() -> None:
    loaded = load_profile(PROFILE)
    warnings = [f for f in loaded.findings if f.severity == "warning"]
    ports = [w for w in warnings if "Mooncake" in w.message]
    assert len(ports) == 3
    assert all("Mooncake's random port range 20000-35999" in str(w) for w in ports)
    assert all("use kv_port ≥ 36000" in str(w) for w in ports)
    text = PROFILE.read_text().splitlines()
    assert {text[w.line - 1].strip().split(":")[0] for w in ports} == {"kv_port"}
    # and its bench: 20 prompts at once on a prefill that takes one at a time (its own note says
    # the wait counts in TTFT): one warning per instance
    ready = [w for w in warnings if "VLLM_ENGINE_READY_TIMEOUT_S" in w.message]
    queued = [w for w in warnings if w not in ports and w not in ready]
    assert [w.message.split(";")[1].split(" at a time")[0] for w in queued] == [
        " instances.prefill runs max_num_seqs 1 × DP 1 = 1",
        " instances.decode runs max_num_seqs 4 × DP 1 = 4",
    ]
    # and vLLM's own 600 s wait for the engines of its two-node prefill, under the stage's 1800 s
    assert [(w.path, w.message.split(":")[0]) for w in ready] == [
        (
            ("instances", "prefill", "nodes"),
            "vLLM waits 600 s for its engines (VLLM_ENGINE_READY_TIMEOUT_S unset), cpconsole 1800 s (timeouts.prefill)",
        )
    ]
