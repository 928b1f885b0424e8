"""Stall detection and alert rules on synthetic samples with known answers; the probe against
the simulator."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.profile.schema import Alerts
from cpconsole.core.remote import LocalTransport
from cpconsole.core.session import Session
from cpconsole.core.telemetry.alerts import AlertEngine
from cpconsole.core.telemetry.health import PROBE_PREFIX, ChipReading, ProbeAnswer, StallDetector, probe
from cpconsole.core.telemetry.hub import Telemetry
from cpconsole.core.telemetry.npu_smi import parse_info
from cpconsole.core.telemetry.pollers import PollResult
from cpconsole.core.telemetry.vllm_metrics import VllmMetrics, parse_metrics

from .conftest import FIXTURES
from .simcluster import cluster, demo_text


def test_busy_without_progress_is_a_stall_after_the_threshold() -> None:
    detector = StallDetector(after_s=30)
    assert detector.observe(0, running=2, waiting=0, progress=(100, 5, 9)) is None
    assert detector.observe(10, running=2, waiting=0, progress=(150, 5, 19)) is None  # progress
    assert detector.observe(35, running=2, waiting=0, progress=(150, 5, 19)) is None  # 25 s without
    assert (
        detector.observe(41, running=2, waiting=0, progress=(150, 5, 19)) == "running requests but no progress for 31 s"
    )
    assert detector.observe(42, running=2, waiting=0, progress=(151, 5, 20)) is None  # moving again


def test_a_long_prefill_is_progress_not_a_stall() -> None:
    """A chunked prefill steps the engine without a token out; one unchunked 128k prefill moves no
    counter for as long as it takes, while its chips compute: that is not a stall until much later."""
    chunked = StallDetector(after_s=30)
    for at in range(0, 300, 10):
        assert chunked.observe(at, running=1, waiting=0, progress=(0, 0, at)) is None  # a step every 10 s
    whole = StallDetector(after_s=30, computing_after_s=600)
    for at in range(0, 600, 10):
        assert whole.observe(at, running=1, waiting=0, progress=(0, 0, 0), chips=ChipReading(True, at)) is None
    assert whole.observe(600, running=1, waiting=0, progress=(0, 0, 0), chips=ChipReading(True, 600)) == (
        "running requests but no progress while its chips compute for 600 s"
    )


def test_idle_chips_are_a_stall_once_read_after_the_quiet_spell_began() -> None:
    detector = StallDetector(after_s=30)
    detector.observe(0, running=1, waiting=0, progress=(0, 0, 0), chips=ChipReading(False, -5))
    # 40 s quiet, but npu-smi last answered before it began: it has not said whether the chips compute
    assert detector.observe(40, running=1, waiting=0, progress=(0, 0, 0), chips=ChipReading(False, -5)) is None
    idle = ChipReading(False, 38)  # now it has: idle
    assert detector.observe(41, running=1, waiting=0, progress=(0, 0, 0), chips=idle) == (
        "running requests but no progress for 41 s"
    )
    without_npus = StallDetector(after_s=30)  # a CPU node: the metrics alone decide
    without_npus.observe(0, running=1, waiting=0, progress=(0, 0, 0))
    assert without_npus.observe(30, running=1, waiting=0, progress=(0, 0, 0)) is not None


def test_queue_without_running_and_failing_probes_are_stalls() -> None:
    detector = StallDetector(after_s=30)
    detector.observe(0, running=0, waiting=3, progress=(0, 0, 0))
    assert (
        detector.observe(30, running=0, waiting=3, progress=(0, 0, 0)) == "requests waiting with none running for 30 s"
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
    orch.note_stall("decode-0", "running requests but no progress for 31 s")
    assert (orch.views["decode-0"].state, orch.views["decode-0"].reason) == (
        "stalled",
        "running requests but no progress for 31 s",
    )
    orch.note_stall("decode-0", None)
    assert orch.views["decode-0"].state == "ready"
    orch.views["prefill-1"] = ProcessView(
        "prefill-1", state="stalled", reason="waiting for the master: is node-rank 0 running?"
    )
    orch.note_stall("prefill-1", None)
    assert orch.views["prefill-1"].state == "stalled"
    await orch.close()


async def test_what_an_old_run_answered_never_holds_against_a_restarted_one(tmp_path: Path) -> None:
    """The probe that failed while decode-0 was being stopped, with /health answering: a new run of
    it starts with none of that, so it cannot look stalled."""
    plan = cluster(tmp_path).plan
    async with httpx.AsyncClient() as http:
        telemetry = Telemetry(plan, {n.name: LocalTransport(n.name) for n in plan.nodes}, http)
        now = 1000.0
        health, probes = telemetry.health["decode-0"], telemetry.probes["decode-0"]
        health.latest = PollResult("health@decode-0", 3.0, now - 60, None, now - 60)
        probes.latest = PollResult("probe@decode-0", None, None, "connection refused", now - 60)
        telemetry.stalls["decode-0"].observe_probe(now - 60, health_ok=True, probe_ok=False)
        assert telemetry.stalls["decode-0"].observe_probe(now, health_ok=True, probe_ok=False)  # the old run: stalled
        telemetry.new_run("decode-0")
        assert await telemetry.follow(["decode-0"], [], now) == {"decode-0": None}
        assert probes.latest.error is None and probes.latest.value is None
        await telemetry.sync([])


async def test_a_long_prefill_on_the_demo_raises_no_stall(tmp_path: Path) -> None:
    """One unchunked prefill far longer than stall_after_s (the guide's P: max_num_seqs 1, chunked
    prefill off): no counter moves until it ends, the chips compute all along — not a stall."""
    slow = demo_text(tmp_path, extra_env={"CPCONSOLE_SIM_PREFILL_TOKS": "40"})  # × TP16 × PCP2: 1280 tokens/s
    plan = build_plan(load_profile_text(slow + "alerts: {stall_after_s: 8}\n"))
    async with Session(plan) as session:
        try:
            await session.start()
            assert await session.up()
            before = len(session.alert_history)  # start-up's own (a headless rank waiting for its master)
            prefill = plan.process("prefill-0")
            async with httpx.AsyncClient(trust_env=False, timeout=600) as client:
                answer = await client.post(
                    prefill.base_url + "/v1/completions",
                    json={"model": plan.model_name, "prompt": "word " * 25_000, "max_tokens": 1},
                )
                assert answer.status_code == 200
                metrics = parse_metrics((await client.get(prefill.base_url + "/metrics")).text)
            took = metrics.total.histograms["prefill"].sum
            assert took > 2 * plan.alerts.stall_after_s  # the server's own account: a prefill long enough
            raised = [r.alert.key for r in session.alert_history[before:]]
            assert raised == [], raised  # not stalled, and no log line read as a hang either
        finally:
            await session.down()


async def test_probes_hold_back_from_a_full_server(tmp_path: Path) -> None:
    """The guide's prefill runs one request at a time (max_num_seqs 1): a probe sent during a long
    prefill would queue behind it, time out and read as a stall; it is held back and shown as busy."""
    plan = build_plan(load_profile_text(demo_text(tmp_path)))
    assert (plan.process("prefill-0").capacity, plan.process("decode-0").capacity) == (1, 4)
    async with httpx.AsyncClient(trust_env=False) as http:
        hub = Telemetry(plan, {n.name: LocalTransport(n.name) for n in plan.nodes}, http)
        running = parse_metrics('vllm:num_requests_running{engine="0",model_name="m"} 1\n')
        hub.metrics["prefill-0"].latest = PollResult("metrics@prefill-0", running, 1.0, None, 1.0)
        hub.metrics["decode-0"].latest = PollResult("metrics@decode-0", running, 1.0, None, 1.0)
        assert hub.busy("prefill-0") == "1/1 running" and hub.busy("decode-0") == ""
        held = await hub.probes["prefill-0"].poll_once()  # nothing listens there: held back, not failed
        assert held.error is None and held.value == ProbeAnswer(busy="1/1 running")
        assert hub.probes_in_window("prefill-0") == 0


async def test_a_stall_is_measured_between_samples_not_between_looks(tmp_path: Path) -> None:
    """The console looks every second, /metrics is read every 5 s: one sample showing a request
    running, looked at again and again, is not a request running that long."""
    plan = build_plan(load_profile_text(demo_text(tmp_path) + "alerts: {stall_after_s: 3}\n"))
    running = parse_metrics('vllm:num_requests_running{engine="0",model_name="m"} 1\n')
    async with httpx.AsyncClient(trust_env=False) as http:
        hub = Telemetry(plan, {n.name: LocalTransport(n.name) for n in plan.nodes}, http)
        idle = parse_info((FIXTURES / "npu-smi/vllm-ascend-issue-6085-a3-ascend910-16chip-procs.txt").read_text())
        hub.npu["decode-a"].latest = PollResult("npu-smi@decode-a", idle, 104.0, None, 104.0)  # its chips idle
        hub.metrics["decode-0"].latest = PollResult("metrics@decode-0", running, 100.0, None, 100.0)
        for now in (100.0, 101.0, 104.0, 110.0):  # looked at four times, one sample
            assert hub._observe_stall("decode-0", now) is None
        hub.metrics["decode-0"].latest = PollResult("metrics@decode-0", running, 105.0, None, 105.0)
        assert hub._observe_stall("decode-0", 111.0) == "running requests but no progress for 5 s"
