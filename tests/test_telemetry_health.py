"""Stall detection and alert rules on synthetic samples with known answers; the probe against
the simulator."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cpconsole.core.profile.schema import Alerts
from cpconsole.core.telemetry.alerts import AlertEngine
from cpconsole.core.telemetry.health import PROBE_PREFIX, StallDetector, probe
from cpconsole.core.telemetry.npu_smi import parse_info
from cpconsole.core.telemetry.vllm_metrics import VllmMetrics, parse_metrics

from .conftest import FIXTURES
from .simcluster import cluster


def test_busy_without_tokens_is_a_stall_after_the_threshold() -> None:
    detector = StallDetector(after_s=30)
    assert detector.observe(0, running=2, waiting=0, generation_tokens=100) is None
    assert detector.observe(10, running=2, waiting=0, generation_tokens=150) is None  # progress
    assert detector.observe(35, running=2, waiting=0, generation_tokens=150) is None  # 25 s without
    assert (
        detector.observe(41, running=2, waiting=0, generation_tokens=150)
        == "running requests but no token generated for 31 s"
    )
    assert detector.observe(42, running=2, waiting=0, generation_tokens=151) is None  # moving again


def test_queue_without_running_and_failing_probes_are_stalls() -> None:
    detector = StallDetector(after_s=30)
    detector.observe(0, running=0, waiting=3, generation_tokens=0)
    assert (
        detector.observe(30, running=0, waiting=3, generation_tokens=0) == "requests waiting with none running for 30 s"
    )
    other = StallDetector(after_s=10)
    other.observe_probe(0, health_ok=True, probe_ok=False)
    assert other.observe_probe(12, health_ok=True, probe_ok=False) == "/health answers but probe requests fail for 12 s"
    assert other.observe_probe(13, health_ok=False, probe_ok=False) is None  # down, not stalled


def kv_metrics(usage: float, waiting: float = 0) -> VllmMetrics:
    return parse_metrics(
        f'vllm:kv_cache_usage_perc{{engine="0",model_name="m"}} {usage}\n'
        f'vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}\n'
    )


def test_alert_rules() -> None:
    engine = AlertEngine(
        Alerts(hbm_pct=90, kv_cache_pct=90, kv_cache_for_s=30, waiting_for_s=60), decodes=frozenset({"decode-0"})
    )
    warning = parse_info((FIXTURES / "npu-smi/openyuanrong-functionsystem-910a-health-warning.txt").read_text())
    busy = parse_info((FIXTURES / "npu-smi/vllm-ascend-issue-6085-a3-ascend910-16chip-procs.txt").read_text())
    alerts = engine.evaluate(0, npu={"a": warning, "b": busy}, metrics={"decode-0": kv_metrics(0.95, 2)})
    assert {a.key for a in alerts if a.source == "a"} == {f"health:a npu {n}/0" for n in range(4)} | {"hbm:a npu 2/0"}
    assert next(a for a in alerts if a.key == "hbm:a npu 2/0").message == "a npu 2/0 HBM 94% used"  # 30750 of 32768
    assert not [a for a in alerts if a.source == "b"]  # 26.7 of 64 GB: fine
    assert not [a for a in alerts if a.source == "decode-0"]  # not held long enough yet
    later = engine.evaluate(
        61,
        npu={},
        metrics={"decode-0": kv_metrics(0.95, 2)},
        stalled={"prefill-0": "no tokens"},
    )
    assert [a.key for a in later] == ["stalled:prefill-0", "kv:decode-0", "waiting:decode-0"]
    assert later[0].severity == "critical"
    # what waits on a decode waits for its KV from the prefill (vLLM's WAITING_FOR_REMOTE_KVS)
    assert later[-1].kind == "kv_wait" and "waiting for their KV from the prefill" in later[-1].message
    assert "ASCEND_TRANSFER_TIMEOUT" in later[-1].hint
    cleared = engine.evaluate(62, npu={}, metrics={"decode-0": kv_metrics(0.5, 0)})
    assert cleared == []


def test_hbm_limit_follows_gpu_memory_utilization(tmp_path: Path) -> None:
    from cpconsole.core.telemetry.alerts import hbm_limits

    plan = cluster(tmp_path).plan
    assert hbm_limits(plan) == {"prefill-a": 83.0, "prefill-b": 83.0, "decode-a": 99.0}
    busy = parse_info((FIXTURES / "npu-smi/vllm-ascend-issue-6085-a3-ascend910-16chip-procs.txt").read_text())
    strict = AlertEngine(Alerts(hbm_pct=30))
    assert len(strict.evaluate(0, npu={"decode-a": busy}, metrics={})) == 16  # 41 % > 30 %
    relaxed = AlertEngine(Alerts(hbm_pct=30), hbm_limits(plan))
    assert relaxed.evaluate(0, npu={"decode-a": busy}, metrics={}) == []


async def test_probe_is_tagged_and_measured(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    try:
        await c.start("decode-0")
        await c.wait_http("decode-0")
        async with httpx.AsyncClient(trust_env=False) as http:
            assert await probe(http, c.url("decode-0"), "deepseek_v3") > 0
            with pytest.raises(httpx.HTTPStatusError):
                await probe(http, c.url("decode-0"), "no-such-model")
        assert PROBE_PREFIX in c.log("decode-0") or "POST /v1/completions" in c.log("decode-0")
    finally:
        await c.stop_all()


async def test_telemetry_stalls_come_and_go_but_never_clear_the_orchestrators_own(tmp_path: Path) -> None:
    from cpconsole.core.orchestrate import Orchestrator, ProcessView

    plan = cluster(tmp_path).plan
    orch = Orchestrator(plan, {})
    orch.views["decode-0"] = ProcessView("decode-0", state="ready")
    orch.note_stall("decode-0", "running requests but no token generated for 31 s")
    assert (orch.views["decode-0"].state, orch.views["decode-0"].reason) == (
        "stalled",
        "running requests but no token generated for 31 s",
    )
    orch.note_stall("decode-0", None)
    assert orch.views["decode-0"].state == "ready"
    orch.views["prefill-1"] = ProcessView(
        "prefill-1", state="stalled", reason="waiting for the master: is node-rank 0 running?"
    )
    orch.note_stall("prefill-1", None)
    assert orch.views["prefill-1"].state == "stalled"
    await orch.close()
