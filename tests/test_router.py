"""vllm-router (the vLLM project's Rust router, installed from PyPI by the lock) as the proxy kind:
the plan renders its PD command line from the instances, validate refuses what it cannot serve
with the reason, and in front of the simulator's 1P1D it is gated as srtctl gates it (its /workers
lists every API server, healthy), smoke passes through it and the decode's KV really came from the
prefill."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import httpx

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile, load_profile_text
from cpconsole.core.router import not_ready
from cpconsole.core.telemetry.proxy_metrics import parse_proxy_metrics
from cpconsole.core.telemetry.router_metrics import parse_router_metrics
from cpconsole.core.telemetry.window import MetricsWindow
from cpconsole.core.view import TrafficFigures
from cpconsole.proxy.backends import Backend
from cpconsole.proxy.metrics import ProxyMetrics
from cpconsole.ui.screens.board import rollup
from cpconsole.ui.screens.metrics import traffic_summary

from .conftest import FIXTURES, PROFILES, write_profile
from .frozen import frozen_session
from .simcluster import demo_text, one_p_two_d
from .test_day_two import cpconsole as run_cpconsole
from .test_day_two import kill_server, under_traffic
from .test_orchestrate import cpconsole

ROUTER = Path(sys.executable).with_name("vllm-router")


def as_router(text: str, extra: str = "") -> str:
    """The demo's proxy section made a vllm-router (run from this environment)."""
    return text.replace(
        "  command: [python3, -m, cpconsole.proxy]\n", f"  kind: vllm-router\n  command: [{ROUTER}]\n{extra}", 1
    )


def test_the_plan_renders_the_routers_pd_command_line_and_its_metrics_port() -> None:
    plan = build_plan(load_profile_text(as_router((PROFILES / "demo.yaml").read_text(), "  metrics_port: 9105\n")))
    proxy = plan.process("proxy")
    argv = list(proxy.argv)
    assert argv[:6] == [str(ROUTER), "--host", "127.0.0.11", "--port", "8005", "--vllm-pd-disaggregation"]
    assert argv[argv.index("--prefill") : argv.index("--prefill") + 3] == [
        "--prefill",
        "http://127.0.0.11:8004",
        "none",
    ]
    assert argv[argv.index("--decode") + 1] == "http://127.0.0.13:8004"
    assert argv[argv.index("--kv-connector") + 1] == "nixl"
    assert argv[argv.index("--prometheus-port") + 1] == "9105" and proxy.metrics_url == "http://127.0.0.11:9105/metrics"
    assert proxy.health_path == "/workers" and proxy.admin_env is None  # no instance API of cpconsole's
    assert {(p.start, p.end) for p in proxy.ports} == {(8005, 8005), (9105, 9105)}  # preflight checks both free


def test_validate_refuses_what_the_router_cannot_serve_with_the_reason(tmp_path: Path) -> None:
    text = as_router((PROFILES / "demo.yaml").read_text(), "  args: {kv-connector: mooncake}\n")
    profile = tmp_path / "router.yaml"
    profile.write_text(text + "api_key:\n  env: SOME_KEY\n")
    done = cpconsole("validate", profile)
    assert done.returncode == 2
    assert "vllm-router takes the servers' API key only on its command line" in done.stderr
    assert "its mooncake mode asks a bootstrap server on each prefill node" in done.stderr
    assert "proxy.args.kv-connector" in done.stderr


def test_not_ready_until_every_planned_worker_is_listed_healthy() -> None:
    a, b = "http://10.0.0.1:8004", "http://10.0.0.3:8004"
    listed = {"workers": [{"url": a, "is_healthy": True}, {"url": b, "is_healthy": False}], "total": 2}
    assert not_ready(listed, [a, b]) == f"the router holds {b} unhealthy"
    assert not_ready({"workers": [{"url": a, "is_healthy": True}]}, [a, b]) == f"the router does not list {b}"
    assert not_ready({"error": "x"}, [a]) == "its /workers answer is not a worker list"
    listed["workers"][1]["is_healthy"] = True  # type: ignore[index]
    assert not_ready(listed, [a, b]) is None


def test_the_router_in_front_of_the_simulators_1p1d_hands_the_kv_over(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(as_router(demo_text(tmp_path)))
    plan = build_plan(load_profile_text(profile.read_text()))
    try:
        up = cpconsole("up", profile, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        smoke = cpconsole("smoke", profile, "--json", timeout=120)
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        report = json.loads(smoke.stdout)
        assert report["passed"] and any("proxy" in c["name"] for c in report["checks"]), report
        decode = httpx.get(plan.process("decode-0").base_url + "/metrics", timeout=10).text
        handed = [line for line in decode.splitlines() if 'source="external_kv_transfer"' in line]
        assert handed and float(handed[0].split()[-1]) > 0  # the decode's prompt came as the prefill's KV
        status = json.loads(cpconsole("status", profile, "--json").stdout)
        assert {p["name"]: p["state"] for p in status["processes"]}["proxy"] == "ready"
    finally:
        cpconsole("down", profile)


def test_the_routers_metrics_give_its_answered_requests_and_no_made_up_ttft() -> None:
    """Two real scrapes of vllm-router 0.1.17, five requests apart, read as the console reads them."""
    window = MetricsWindow()
    for at, name in ((100.0, "before"), (110.0, "after")):
        window.add(parse_router_metrics((FIXTURES / "vllm-router" / f"metrics-0.1.17-{name}.txt").read_text()), at)
    traffic = TrafficFigures.of(window, with_failures=True)
    assert (traffic.answered, traffic.failed, traffic.per_s) == (5, 0, 0.5)
    assert not traffic.ttft_exported and traffic.ttft == (None, None) and traffic.e2e == (None, None)
    assert "TTFT not exported by the proxy" in traffic_summary(traffic).plain


def test_the_proxys_view_of_its_backends_is_read_from_either_kind() -> None:
    """vllm-router's worker health (a real capture) and cpconsole's proxy's backend states (its own
    exposition) read into one map: host:port → state."""
    router = parse_router_metrics((FIXTURES / "vllm-router" / "metrics-0.1.17-after.txt").read_text())
    assert router.backends == {"127.202.1.11:8004": "healthy", "127.202.1.13:8004": "healthy"}
    ours = ProxyMetrics()
    ours.show_backends({"decode": [Backend("10.0.0.13", 8004), Backend("10.0.0.14", 8004, state="open")]})
    assert parse_proxy_metrics(ours.render().decode()).backends == {
        "10.0.0.13:8004": "healthy",
        "10.0.0.14:8004": "open",
    }


def test_the_board_says_what_the_proxy_keeps_out_of_rotation() -> None:
    session = frozen_session()
    poller = session.telemetry.metrics["proxy"]
    latest = poller.latest
    assert latest.value is not None
    seen = {"127.0.0.11:8004": "healthy", "127.0.0.13:8004": "open"}
    poller.latest = dataclasses.replace(latest, value=dataclasses.replace(latest.value, backends=seen))
    assert "proxy: 127.0.0.13:8004 open" in rollup(session, session.view()).plain
    poller.latest = dataclasses.replace(latest, value=dataclasses.replace(latest.value, backends={}))
    assert "proxy: " not in rollup(session, session.view()).plain


async def test_a_decode_killed_behind_the_router_fails_only_what_it_held(tmp_path: Path) -> None:
    """A 1P2D behind vllm-router under steady streaming traffic, one decode SIGKILLed: with its health
    checks every second (its default is every 60 s: set in the profile's args), requests fail only
    until a check has seen the decode gone, none a second and a half later. Unlike cpconsole's proxy
    it does not send a request that failed before its first byte to the other decode: what failed
    here ran from 7 to 18 requests (8 streaming clients); with its defaults, 26 within 0.8 s."""
    args = "  args: {health-check-interval-secs: 1, health-failure-threshold: 1}\n"
    profile = write_profile(tmp_path, as_router(one_p_two_d(demo_text(tmp_path)), args))
    code, out, err = await run_cpconsole("up", str(profile))
    try:
        assert code == 0, out + err
        plan = build_plan(load_profile(profile))

        traffic, _, killed = await under_traffic(plan, lambda: kill_server(profile, "decode2-0"))
        assert traffic.failed(after=killed + 1.5) == 0, [round(t - killed, 2) for t, ok in traffic.results if not ok]
    finally:
        await run_cpconsole("down", str(profile))


def test_preflight_finds_the_router_where_it_runs_and_reads_its_version(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(as_router(demo_text(tmp_path)))
    done = cpconsole("preflight", profile, "--json", timeout=120)
    checks = {c["check"]: c for c in json.loads(done.stdout) if c["node"] == "prefill-a"}
    assert checks["proxy program"]["status"] == "PASS", checks["proxy program"]
    assert (checks["proxy version"]["status"], checks["proxy version"]["evidence"]) == ("PASS", "vllm-router 0.1.17")
    profile.write_text(as_router(demo_text(tmp_path)).replace(str(ROUTER), str(tmp_path / "no-router")))
    missing = json.loads(cpconsole("preflight", profile, "--json", timeout=120).stdout)
    (program,) = [c for c in missing if c["check"] == "proxy program"]
    assert program["status"] == "FAIL" and "pip install vllm-router==0.1.17" in program["hint"]
