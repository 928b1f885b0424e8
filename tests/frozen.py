"""A console session frozen at one moment, for snapshot tests: the demo's plan with every process
up, and telemetry that the real parsers read from captured fixtures (A3 npu-smi, vLLM /metrics,
a vLLM start-up log) and from the proxy's own metrics code. Nothing runs and the clock stands still, so every render is the same."""

from __future__ import annotations

import calendar
import time
from pathlib import Path

from cpconsole.core.orchestrate import ProcessView
from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.preflight import Check
from cpconsole.core.profile import load_profile
from cpconsole.core.remote import TailChunk
from cpconsole.core.session import Session
from cpconsole.core.smoke.history import History
from cpconsole.core.telemetry.alerts import Alert, AlertRecord
from cpconsole.core.telemetry.npu_smi import parse_info
from cpconsole.core.telemetry.pollers import PollResult
from cpconsole.core.telemetry.proxy_metrics import parse_proxy_metrics
from cpconsole.core.telemetry.vllm_metrics import VllmMetrics, parse_metrics
from cpconsole.proxy.metrics import ProxyMetrics, Timing

from .conftest import PROFILES

FIXTURES = Path(__file__).parent / "fixtures"
STARTED = "2026-11-28T01:00:00"
NOW = calendar.timegm(time.strptime(STARTED, "%Y-%m-%dT%H:%M:%S")) + 3723.0  # 1h02m03s later, rendered in UTC


# what the board's last-line column shows of a serving deployment: engine stats, never access lines
STATS_LINE = next(
    line.split(":", 1)[1]  # "serve-p.log:" names the file the line was captured from
    for line in (FIXTURES / "vllm" / "pd-example-connector.log").read_text().splitlines()
    if "Engine 000: Avg prompt throughput" in line
)
PROXY_LINE = "INFO:     Uvicorn running on http://127.0.0.11:8005 (Press CTRL+C to quit)"


def frozen_session() -> Session:
    plan = build_plan(load_profile(PROFILES / "demo.yaml"))
    session = Session(plan, clock=lambda: NOW, history=History(Path("/nonexistent/cpconsole/prompts.jsonl")))
    orchestrator, telemetry = session.orchestrator, session.telemetry
    log = (FIXTURES / "vllm" / "startup-enforce-eager.log").read_bytes()
    for i, proc in enumerate(plan.processes):
        orchestrator.views[proc.name] = ProcessView(
            proc.name,
            state="ready",
            since=NOW - 60,
            pid=41000 + i,
            started_at=STARTED,
            health_ms=3.0 + i,
            last_line=PROXY_LINE if proc.role == "proxy" else STATS_LINE,
        )
        orchestrator.stores[proc.name].feed(TailChunk(0, log))
    npu = parse_info((FIXTURES / "npu-smi" / "vllm-ascend-issue-6085-a3-ascend910-16chip-procs.txt").read_text())
    for node, poller in telemetry.npu.items():
        poller.latest = PollResult(f"npu-smi@{node}", npu, NOW - 2, None, NOW - 2)
        session.telemetry.npu_history[node] = [(0.2 + 0.7 * min(1, k / 20), 0.1 + 0.8 * (k % 7) / 7) for k in range(40)]
    # two scrapes of one real server, 27 s apart: rates and windowed quantiles come out of the real window code
    before = parse_metrics((FIXTURES / "vllm" / "metrics.txt").read_text())
    after = parse_metrics((FIXTURES / "vllm" / "metrics-after-bench.txt").read_text())
    for name, scraper in telemetry.metrics.items():
        if plan.process(name).role == "proxy":
            continue
        scraper.latest = PollResult(f"metrics@{name}", after, NOW - 1, None, NOW - 1)
        telemetry.windows[name].add(before, NOW - 28)
        telemetry.windows[name].add(after, NOW - 1)
    # the proxy's: two scrapes of the real proxy metrics code around chat turns, two 128k prompts, a failure
    proxy_before, proxy_after = proxy_scrapes()
    telemetry.metrics["proxy"].latest = PollResult("metrics@proxy", proxy_after, NOW - 1, None, NOW - 1)
    telemetry.record("proxy", proxy_before, NOW - 28)
    telemetry.record("proxy", proxy_after, NOW - 1)
    session.preflight_checks, session.preflight_took = preflight_results(plan), 3.2
    session.npu_ips = {n.name: {c: f"29.0.{10 + k}.{c}" for c in range(n.chips)} for k, n in enumerate(plan.nodes)}
    session.alert_history = [
        AlertRecord(
            Alert("hbm@decode-a", "warning", "decode-a", "HBM 96% on chip 3 (limit 95%)"), NOW - 1800, NOW - 1500
        ),
        AlertRecord(
            Alert("stall@decode-0", "critical", "decode-0", "no progress for 45 s with 3 running"), NOW - 240, NOW - 200
        ),
        AlertRecord(Alert("kv@prefill-0", "warning", "prefill-0", "KV cache 93% for 30 s"), NOW - 75),
    ]
    session.alerts = [session.alert_history[-1].alert]
    return session


def proxy_scrapes() -> tuple[VllmMetrics, VllmMetrics]:
    """The proxy's /metrics before and after six chat turns, two 128k prompts and one unreachable
    prefill (each request's moments set back from now, none near a bucket's edge)."""
    metrics = ProxyMetrics()
    before = parse_proxy_metrics(metrics.render().decode())
    turns = [(1200, 0.09, 0.03, 1.4, 40)] * 6 + [(131072, 2.3, 0.21, 4.2, 64)] * 2
    for prompt, prefill, handoff, e2e, out in turns:
        timing = Timing("127.0.0.11:8004", "127.0.0.13:8004", prompt_tokens=prompt, tokens_out=out)
        timing.arrived = time.monotonic() - e2e
        timing.prefilled, timing.first_token = timing.arrived + prefill, timing.arrived + prefill + handoff
        timing.finish(metrics, "ok")
    Timing("127.0.0.11:8004", "127.0.0.13:8004").finish(metrics, "prefill_unreachable")
    return before, parse_proxy_metrics(metrics.render().decode())


def preflight_results(plan: LaunchPlan) -> list[Check]:
    """What the demo's nodes answer, with one DOWN link, its failed ping and a version mismatch."""
    checks = [Check(n.name, "reachable", "PASS", "as root in 4 ms", same="as root") for n in plan.nodes]
    for node in plan.nodes:
        for chip in range(node.chips):
            down = node.name == "prefill-b" and chip == 3
            checks.append(
                Check(
                    node.name,
                    "NPU link",
                    "FAIL" if down else "PASS",
                    f"link {'DOWN' if down else 'UP'}",
                    "check the optics and cabling: hccn_tool -i N -link -g" if down else "",
                    chip=chip,
                )
            )
    for chip in range(16):
        lost = chip == 3
        checks.append(
            Check(
                "prefill-b",
                "NPU ping",
                "FAIL" if lost else "PASS",
                f"29.0.13.{chip}: {100 if lost else 0}.00% loss",
                "check the route between the NPU networks" if lost else "",
                chip=chip,
                peer=f"decode-a chip {chip}",
                same="0% loss",
            )
        )
    for node in plan.nodes:
        version = "2.6.0" if node.name == "decode-a" else "2.7.1.post1"
        checks.append(
            Check(
                node.name,
                "torch-npu version",
                "FAIL" if node.name == "decode-a" else "PASS",
                version,
                "install the same version on every node" if node.name == "decode-a" else "",
            )
        )
    checks.append(Check("profile", "profile", "WARN", "demo.yaml:40:5: an example warning from the profile"))
    return checks
