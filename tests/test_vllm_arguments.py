"""`vllm_args` against vLLM's own arguments: the data of two releases read from their parsers
(scripts/vllm_args.py), agreeing with a real `vllm serve --help=all` capture; misspelt keys, wrong
types and choices refused at their line; what differs between releases; preflight asking the
node's own vLLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import ProfileError, load_profile_text
from cpconsole.core.profile.vllm_arguments import DATA, for_version, from_help, known_sets

from .conftest import FIXTURES, PROFILES, line_of
from .simcluster import demo_text
from .test_preflight import checks_of

CPU = (PROFILES / "cpu-1p1d.yaml").read_text()  # vLLM 0.32.0
DEMO = (PROFILES / "demo.yaml").read_text()  # vLLM 0.13.0


def refusals(text: str) -> list[str]:
    with pytest.raises(ProfileError) as caught:
        load_profile_text(text)
    return [f"{f.line}: {f.message}" for f in caught.value.findings]


def test_two_releases_read_from_their_own_parsers() -> None:
    assert [s.vllm for s in known_sets()] == ["0.13.0", "0.15.0", "0.32.0"]  # the guide's 0.15.0 among them
    for path in DATA.glob("*.json"):
        data = json.loads(path.read_text())
        assert data["source"].startswith("vllm serve's parser") and path.stem == data["vllm"]
        args = data["args"]
        assert args["tensor_parallel_size"] == {"flags": ["--tensor-parallel-size", "-tp"], "kind": "int"}
        assert args["kv_transfer_config"]["kind"] == "json" and args["enforce_eager"]["kind"] == "flag"
        assert args["gpu_memory_utilization"]["kind"] == "float" and "bfloat16" in args["dtype"]["choices"]
    assert for_version("0.14.1").vllm == "0.13.0" and for_version("0.40.0").vllm == "0.32.0"  # type: ignore[union-attr]
    assert for_version("0.9.2").vllm == "0.13.0" and for_version(None).vllm == "0.32.0"  # type: ignore[union-attr]


def test_the_data_agrees_with_a_real_help_capture() -> None:
    """vLLM 0.32.0's `vllm serve --help=all`, captured from the CPU test bed, read as preflight reads
    a node's: the same spellings, and the same ones take no value."""
    helped = from_help((FIXTURES / "vllm" / "serve-help.txt").read_text(), "0.32.0")
    parsed = for_version("0.32.0")
    assert parsed is not None and len(helped.by_flag) > 400
    assert set(helped.by_flag) == set(parsed.by_flag)
    assert {f for f, a in helped.by_flag.items() if a.kind == "flag"} == {
        f for f, a in parsed.by_flag.items() if a.kind == "flag"
    }


def test_a_misspelt_key_is_refused_at_its_line_with_the_nearest_one() -> None:
    text = DEMO.replace(
        "      tensor_parallel_size: 16\n      enable_expert", "      tensor_paralel_size: 16\n      enable_expert", 1
    )
    (found,) = [r for r in refusals(text) if "paralel" in r]
    assert found == (
        f"{line_of(text, 'tensor_paralel_size')}: vLLM 0.13.0's `vllm serve` has no argument "
        "--tensor-paralel-size; did you mean 'tensor_parallel_size'?"
    )


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (
            "      max_num_seqs: 8",
            '      max_num_seqs: "eight"',
            '--max-num-seqs takes an integer in vLLM 0.32.0\'s `vllm serve`, not "eight"',
        ),
        (
            "      dtype: float32",
            "      dtype: float64",
            "--dtype takes one of auto, bfloat16, float, float16, float32, half",
        ),
        ("      enforce_eager: true", "      enforce_eager: 1", "--enforce-eager takes true or false"),
    ],
)
def test_a_value_vllm_would_refuse_is_refused(old: str, new: str, says: str) -> None:
    text = CPU.replace(old, new)
    assert any(says in r and r.startswith(f"{line_of(text, new.strip())}:") for r in refusals(text))


def test_what_one_release_takes_and_another_does_not() -> None:
    """swap_space is gone from vLLM 0.32.0; dcp_comm_backend came after 0.13.0."""
    older = CPU.replace('versions: {vllm: "0.32.0"}', 'versions: {vllm: "0.13.0"}')
    for text, key, refused in ((CPU, "swap_space: 4", True), (older, "swap_space: 4", False)):
        variant = text.replace("      max_num_seqs: 8", f"      max_num_seqs: 8\n      {key}")
        assert any("--swap-space" in r for r in refusals(variant)) if refused else load_profile_text(variant)
    newer_key = older.replace("      max_num_seqs: 8", "      max_num_seqs: 8\n      dcp_comm_backend: ag_rs")
    assert any("no argument --dcp-comm-backend" in r for r in refusals(newer_key))


async def test_preflight_checks_flags_against_the_installed_vllm(tmp_path: Path) -> None:
    """A release cpconsole has data of is checked against that data; another one is asked itself
    (`vllm serve --help=all`, slow on a real node: it imports all of vLLM). The simulated nodes'
    `vllm serve` takes fewer flags than vLLM 0.13.0: as 0.13.0 they pass, as 0.14.1 they are asked."""
    extra = "      max_num_seqs: 4\n      max_logprobs: 5"
    text = demo_text(tmp_path).replace("      max_num_seqs: 4", extra)
    assert "--max-logprobs" in build_plan(load_profile_text(text)).process("decode-0").argv
    checks = [c for c in await checks_of(text) if c.check == "vllm arguments"]
    assert {c.status for c in checks} == {"PASS"} and "vLLM 0.13.0's" in checks[0].evidence
    installed = {"CPCONSOLE_SIM_VERSIONS": "vllm=0.14.1"}
    asked = demo_text(tmp_path, extra_env=installed).replace("      max_num_seqs: 4", extra)
    checks = [c for c in await checks_of(asked) if c.check == "vllm arguments"]
    assert {(c.node, c.status) for c in checks} == {("prefill-a", "PASS"), ("prefill-b", "PASS"), ("decode-a", "FAIL")}
    (wrong,) = [c for c in checks if c.status == "FAIL"]
    assert wrong.evidence == "--max-logprobs is not an argument of vLLM 0.14.1"


def test_a_release_without_data_is_said_and_its_refusals_are_warnings() -> None:
    # a release between two with data: its flags can only be held against 0.13.0's, and a flag 0.13.0
    # lacks may be new — a warning, not an error that stops `up`
    text = DEMO.replace('vllm: "0.13.0"', 'vllm: "0.14.1"', 1).replace(
        "      enforce_eager: true", "      brand_new_flag: 1", 1
    )
    assert "brand_new_flag" in text
    findings = load_profile_text(text).findings
    said = {(f.severity, f.dotted, f.message.split(";")[0]) for f in findings if "0.13.0" in f.message}
    assert (
        "warning",
        "versions.vllm",
        "cpconsole has no argument data of vLLM 0.14.1 (it has 0.13.0, 0.15.0, 0.32.0): vllm_args are checked against 0.13.0's",
    ) in said
    assert any(s == "warning" and p.endswith("vllm_args.brand_new_flag") for s, p, _ in said)
    assert refusals(DEMO.replace("      enforce_eager: true", "      brand_new_flag: 1", 1))  # 0.13.0 itself: an error
