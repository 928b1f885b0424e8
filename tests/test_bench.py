"""The bench runner: `vllm bench serve` with the guide's intent minus its defects, run on a node
through the transport (here a stand-in `vllm` that answers with the real captured result JSON),
its output streamed, its result fetched, stored and compared."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport
from cpconsole.core.smoke.bench import BenchRun, BenchSettings, BenchSummary, load_runs, run_bench, store_run

from .simcluster import demo_text
from .standins import install_docker_stand_in

FIXTURE = Path(__file__).parent / "fixtures" / "vllm" / "bench.json"

STAND_IN = """#!/bin/sh
# a stand-in vllm: records its argv and cwd, talks like bench serve, saves the real result JSON
printf '%s\\n' "$@" > {record}
pwd >> {record}
echo "Starting main benchmark run..."
printf '  0%%|          | 0/20\\r100%%|##########| 20/20\\n'
while [ $# -gt 0 ]; do [ "$1" = --result-filename ] && out=$2; shift; done
cp {fixture} "$out"
echo "============ Serving Benchmark Result ============"
"""


@pytest.fixture
def bench_profile(tmp_path: Path) -> str:
    script = tmp_path / "vllm"
    script.write_text(STAND_IN.format(record=tmp_path / "argv", fixture=FIXTURE))
    script.chmod(0o755)
    return demo_text(tmp_path).replace("vllm_command: [python3, -m, cpconsole.sim, vllm]", f"vllm_command: [{script}]")


async def test_the_bench_runs_on_the_node_without_the_guides_defects(bench_profile: str, tmp_path: Path) -> None:
    plan = build_plan(load_profile_text(bench_profile))
    node = LocalTransport("prefill-a")
    items = [i async for i in run_bench(plan, node, BenchSettings(131072, 64, 20), stamp="20261128-010203")]
    await node.close()
    *lines, run = items
    assert lines == [
        "Starting main benchmark run...",
        "  0%|          | 0/20",
        "100%|##########| 20/20",
        "============ Serving Benchmark Result ============",
    ]
    *argv, cwd = (tmp_path / "argv").read_text().splitlines()
    assert argv[:2] == ["bench", "serve"] and "--request-rate" not in argv
    flags = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert flags["--base-url"] == f"http://{plan.node('prefill-a').address}:8005"  # the proxy, not localhost:8000
    assert flags["--served-model-name"] == "deepseek_v3" and flags["--model"] == "/models/DeepSeek-V3.1_w8a8mix_mtp"
    assert (flags["--dataset-name"], flags["--random-input-len"], flags["--num-prompts"]) == ("random", "131072", "20")
    assert cwd == str(tmp_path / "run" / plan.run_key / "bench")
    assert isinstance(run, BenchRun) and run.result == json.loads(FIXTURE.read_text())
    assert run.summary == BenchSummary(
        completed=20,
        failed=0,
        duration_s=0.2740792669999337,
        request_throughput=72.97159036843469,
        output_throughput=2335.09089178991,
        mean_ttft_ms=128.00117189999014,
        p99_ttft_ms=150.58958115002724,
        mean_tpot_ms=4.355078822580679,
        p99_tpot_ms=5.909875517742412,
        mean_itl_ms=4.355078822580679,
    )
    stored = store_run(run, tmp_path / "state")
    assert stored.name == "20261128-010203.json"
    (stored.parent / "broken.json").write_text("{")  # skipped, not fatal
    assert [r.started for r in load_runs("demo", tmp_path / "state")] == ["20261128-010203"]


async def test_the_bench_runs_in_the_servers_container(
    bench_profile: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where vLLM is installed only in the image: `docker exec` into the API server's container,
    with its environment; the result comes back on the output."""
    docker = install_docker_stand_in(tmp_path / "bin")
    monkeypatch.setenv("DOCKER_STAND_IN_LOG", str(tmp_path / "exec-log"))
    text = bench_profile.replace("  tools: {", f"  container: vllm-ascend\n  tools: {{docker: [{docker}], ", 1)
    plan = build_plan(load_profile_text(text))
    node = LocalTransport("prefill-a")
    items = [i async for i in run_bench(plan, node, BenchSettings(1024, 8, 20), stamp="20261203-010203")]
    await node.close()
    *lines, run = items
    assert lines[0] == "Starting main benchmark run..." and str(lines[-1]).startswith("=====")
    assert isinstance(run, BenchRun) and run.summary.completed == 20
    assert (tmp_path / "exec-log").read_text() == "vllm-ascend\n"  # through the server's container
    *argv, cwd = (tmp_path / "argv").read_text().splitlines()
    assert cwd == f"/tmp/cpconsole-{plan.run_key}-bench"  # in the container: the node's run dir may not be there
    assert argv[:2] == ["bench", "serve"]
    shutil.rmtree(cwd)  # the stand-in's container is this machine


def test_a_result_that_is_not_a_bench_result_is_refused() -> None:
    with pytest.raises(ValueError, match="not a vllm bench serve result"):
        BenchSummary.from_result({"completed": 3})


def test_cpconsole_bench_stores_and_compares_runs(bench_profile: str, tmp_path: Path) -> None:
    profile = tmp_path / "bench.yaml"
    profile.write_text(bench_profile)
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}

    def cpconsole(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cpconsole", *args], capture_output=True, text=True, env=env, timeout=60
        )

    first = cpconsole("bench", str(profile), "--num-prompts", "20")
    second = cpconsole("bench", str(profile), "--json")
    assert first.returncode == 0 and "Serving Benchmark Result" in first.stdout
    assert first.stdout.strip().endswith("← this run") and "20/0" in first.stdout and "128.0ms" in first.stdout
    assert json.loads(second.stdout)["summary"]["completed"] == 20
    listing = cpconsole("bench", str(profile), "--list").stdout.splitlines()
    assert listing[0].startswith("run ") and len(listing) == 3

    refused = cpconsole("bench", str(profile), "--request-rate", "0")  # vllm bench: "send nothing"
    assert refused.returncode == 2 and "--request-rate: must be more than 0, got 0" in refused.stderr
    profile.write_text(bench_profile + "bench: {request_rate: 4}\n")  # Poisson arrivals from the profile
    assert cpconsole("bench", str(profile), "--detailed").returncode == 0
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[argv.index("--request-rate") + 1] == "4.0" and "--save-detailed" in argv
    assert cpconsole("bench", str(profile), "--request-rate", "0.5").returncode == 0  # the command line wins
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[argv.index("--request-rate") + 1] == "0.5" and "--save-detailed" not in argv
