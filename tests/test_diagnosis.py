"""Diagnosis over real lines: every excerpt of cpconsole/sim/real_failures.yaml (public vLLM /
vLLM-Ascend reports) is named right with the place it gives, including the ones held out while the
patterns were written; healthy real logs raise nothing; places map to the profile's nodes and chips;
findings while serving count, clear, and stay cheap."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
import yaml

from cpconsole.core.diagnosis import CAUSES, LogWatch, cause_of, classify, explain, read_place
from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.profile import load_profile

from .conftest import FIXTURES, PROFILES

EXCERPTS_FILE = Path(__file__).resolve().parents[1] / "cpconsole" / "sim" / "real_failures.yaml"
EXCERPTS: list[dict[str, Any]] = yaml.safe_load(EXCERPTS_FILE.read_text())


def _id(excerpt: dict[str, Any]) -> str:
    return f"{excerpt['kind']}-{excerpt['source'].split('/')[-1]}"


@pytest.fixture(scope="module")
def guide() -> LaunchPlan:
    return build_plan(load_profile(PROFILES / "deepseek-v3.1-cp-1p1d.yaml"))


def test_the_catalogue_is_big_enough_and_sourced() -> None:
    assert len(EXCERPTS) >= 30
    assert all("#" in e["source"] and e["line"].strip() for e in EXCERPTS)
    held_out = [e for e in EXCERPTS if e.get("held_out")]
    assert len(held_out) >= len(EXCERPTS) // 5  # a real share kept aside
    assert {e["kind"] for e in held_out} <= {e["kind"] for e in EXCERPTS if not e.get("held_out")}
    # every cause but the catch-all is backed by a real line
    assert {c.kind for c in CAUSES} - {e["kind"] for e in EXCERPTS} <= {"engine_start", "config_error"}


@pytest.mark.parametrize("excerpt", EXCERPTS, ids=_id)
def test_each_real_line_is_named_with_its_place(excerpt: dict[str, Any]) -> None:
    cause = cause_of(excerpt["line"])
    assert cause is not None and cause.kind == excerpt["kind"]
    said = read_place(excerpt["line"])
    assert {k: v for k, v in vars(said).items() if v is not None} == excerpt.get("place", {})


def test_the_root_cause_wins_over_what_it_causes() -> None:
    """A rank out of memory takes its peers down: the log shows both, the OOM is the cause."""
    oom = next(e["line"] for e in EXCERPTS if e["kind"] == "npu_oom")
    lost = next(e["line"] for e in EXCERPTS if e["kind"] == "peer_lost")
    dead = next(e["line"] for e in EXCERPTS if e["kind"] == "engine_dead")
    cause = classify(["INFO starting", oom, lost, dead])
    assert cause is not None and cause.kind == "npu_oom"


@pytest.mark.parametrize("name", ["startup.log", "pd-example-connector.log", "bench.log"])
def test_healthy_real_logs_name_no_cause(name: str, guide: LaunchPlan) -> None:
    lines = (FIXTURES / "vllm" / name).read_text().splitlines()
    assert classify(lines) is None
    watch = LogWatch(guide)
    watch.feed("prefill-0", lines, serving=False, at=0.0)
    watch.feed("decode-0", lines, serving=True, at=1.0)
    assert watch.alerts(2.0) == []


def test_a_real_capture_of_an_engine_dying_is_named() -> None:
    lines = (FIXTURES / "vllm" / "startup-enforce-eager.log").read_text().splitlines()
    cause = classify(lines)
    assert cause is not None and cause.kind == "engine_dead"


def test_a_global_rank_is_placed_on_its_node_rank_and_chip(guide: LaunchPlan) -> None:
    """The guide's prefill: TP16 × PCP2 = 32 ranks over two nodes, 16 each; rank 20 is the
    headless node-rank 1's 5th chip."""
    line = "[ERROR] HCCL(1,python3):2025 [hccl_socket_manager.cc:778] [2][Wait][LinkEstablish]wait socket establish timeout, role[1] rank[20] timeout[120]"
    cause = explain([line], guide.process("prefill-0"), guide)
    assert cause is not None and cause.kind == "hccl_link_timeout"
    assert cause.place == "prefill-b · rank 20 · NPU 4"
    assert "`hccn_tool -i 4 -link -g`" in cause.hint and "on prefill-b" in cause.hint


def test_a_peer_address_is_named_by_its_node(guide: LaunchPlan) -> None:
    line = "[rank1]: EI0009: [PID: 2] Transport init error. Reason: [Create][DestLink]Create Dest error! createLink para:rank[1]-localUserrank[1]-localIpAddr[192.0.0.1], dst_rank[17]-remoteUserrank[17]-remote_ip_addr[192.0.0.2]"
    cause = explain([line], guide.process("prefill-0"), guide)
    assert cause is not None and cause.kind == "hccl_transport"
    assert cause.place == "prefill-a · rank 1 · NPU 1 · peer prefill-b (192.0.0.2) (rank 17)"


def test_a_worker_tag_gives_the_chip(guide: LaunchPlan) -> None:
    line = "(Worker_DP0_TP5 pid=9) ERROR 01-06 06:43:02 [mooncake_connector.py:419] Mooncake transfer failed for request cmpl-1"
    cause = explain([line], guide.process("decode-0"), guide)
    assert cause is not None and cause.place == "decode-a · NPU 5" and "-i 5 -link" in cause.hint


@pytest.mark.parametrize(
    ("context", "says"),
    [
        (['  File "vllm/utils.py", line 572, in get_open_port', '    s.bind(("", 0))'], "get_open_port"),
        (
            ["OSError: [Errno 98] error while attempting to bind on address ('0.0.0.0', 8004): address in use"],
            "port 8004",
        ),
        ([], "its HTTP port 8004 or one vLLM picked"),
    ],
)
def test_address_in_use_is_told_apart_by_its_traceback(context: list[str], says: str, guide: LaunchPlan) -> None:
    cause = explain([*context, "OSError: [Errno 98] Address already in use"], guide.process("decode-0"), guide)
    assert cause is not None and cause.kind == "port_in_use" and says in cause.hint


def test_findings_while_serving_count_and_clear(guide: LaunchPlan) -> None:
    watch = LogWatch(guide, clear_after_s=120.0)
    failed = "(EngineCore_DP0 pid=5) ERROR 01-06 06:43:02 [mooncake_connector.py:419] Mooncake transfer failed for request cmpl-{}"
    watch.feed("decode-0", [failed.format(i) for i in range(3)], serving=True, at=100.0)
    watch.feed("decode-0", [failed.format(9)], serving=True, at=150.0)
    (alert,) = watch.alerts(151.0)
    assert alert.kind == "kv_transfer_failed" and alert.source == "decode-0" and alert.place == "decode-a"
    assert alert.first_seen == 100.0 and alert.last_seen == 150.0 and "(4×, 4/min)" in alert.message
    assert "ASCEND_TRANSFER_TIMEOUT" in alert.hint and alert.evidence.endswith("cmpl-9")
    assert "1/min" in watch.alerts(200.0)[0].message  # the first three are over a minute old
    assert watch.alerts(271.0) == []  # its lines stopped two minutes ago: cleared


def test_phase_matters(guide: LaunchPlan) -> None:
    """shm_broadcast waits are normal while compiling; a request's ValueError is not a start-up failure;
    0 tok/s with requests running is not a hang by itself (a long prefill prints it too)."""
    watch = LogWatch(guide)
    shm = next(e["line"] for e in EXCERPTS if e["kind"] == "shm_broadcast_stall")
    watch.feed("prefill-0", [shm, "ValueError: bad request"], serving=False, at=1.0)
    watch.feed("decode-0", ["ValueError: This model's maximum context length is 1024 tokens"], serving=True, at=1.0)
    alerts = watch.alerts(2.0)
    assert [a.kind for a in alerts] == ["config_error"] and alerts[0].source == "prefill-0"
    idle = "INFO 09-10 09:55:01 metrics.py:351] Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 0.0 tokens/s, Running: 2 reqs, Waiting: 0 reqs"
    watch.feed("decode-0", [idle] * 10, serving=True, at=3.0)  # also all through one long prefill: no alert
    assert "no_progress" not in [a.kind for a in watch.alerts(4.0)]
    assert classify([idle]) is not None  # but it names why a process that ended had hung
    watch.forget("decode-0")
    assert all(a.source != "decode-0" for a in watch.alerts(7.0))


def test_docs_failures_is_made_from_the_catalogue() -> None:
    """docs/failures.md lists every cause with its real lines; scripts/failures_doc.py remakes it."""
    root = EXCERPTS_FILE.parents[2]
    render = runpy.run_path(str(root / "scripts" / "failures_doc.py"))["render"]
    assert (root / "docs" / "failures.md").read_text() == render(), "run scripts/failures_doc.py"
