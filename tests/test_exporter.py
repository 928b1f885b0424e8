"""The Prometheus exporter: `watch --metrics` on the demo scraped and read with prometheus_client's
own parser (NPU Exporter's families and labels, a process's state, a state change in the next
scrape, the bearer token), and the number of series on a 16-node layout bounded."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cpconsole.core.orchestrate import ProcessView
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.ranks import rank_map
from cpconsole.core.telemetry.exporter import ViewCollector
from cpconsole.core.telemetry.npu_smi import parse_info
from cpconsole.core.telemetry.pollers import PollResult
from cpconsole.core.view import SessionView, Snapshot

from .conftest import FIXTURES, PROFILES, ROOT
from .simcluster import cluster
from .sshd import free_port

A3 = parse_info((FIXTURES / "npu-smi" / "youyve-nputop-ascend910-a3-npu-smi-25.2.0.txt").read_text())


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Family and sample names (an info metric's samples end in _info) to their samples."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, [])
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
            if sample.name != family.name:
                out[family.name].append((sample.labels, sample.value))
    return out


DASHBOARD = json.loads((ROOT / "dashboards" / "cpconsole.json").read_text())
METRIC = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{|label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)")


def dashboard_queries() -> list[str]:
    targets = [t["expr"] for panel in DASHBOARD["panels"] for t in panel["targets"]]
    return targets + [v["query"] for v in DASHBOARD["templating"]["list"] if v["type"] == "query"]


def check_dashboard(scraped: dict[str, list[tuple[dict[str, str], float]]]) -> None:
    """Every metric the dashboard queries is one the exporter serves; its variables resolve."""
    named = {a or b for query in dashboard_queries() for a, b in METRIC.findall(query)}
    assert len(named) >= 10 and named <= set(scraped), named - set(scraped)
    profiles = {labels["profile"] for labels, _ in scraped["cpconsole_deployment_info"]}
    nodes = {labels["node"] for labels, _ in scraped["machine_npu_nums"] if labels["profile"] in profiles}
    assert profiles == {"demo"} and nodes == {"prefill-a", "prefill-b", "decode-a"}


def restarts_of(scraped: dict[str, list[tuple[dict[str, str], float]]], process: str) -> float:
    (count,) = [v for labels, v in scraped["cpconsole_process_restarts_total"] if labels["process"] == process]
    return count


def state_of(scraped: dict[str, list[tuple[dict[str, str], float]]], process: str) -> str:
    (state,) = [
        labels["state"]
        for labels, value in scraped["cpconsole_process_state"]
        if labels["process"] == process and value == 1
    ]
    return state


async def test_watch_serves_the_consoles_view_to_prometheus(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    profile = tmp_path / "demo.yaml"
    profile.write_text(c.text)
    host = c.plan.nodes[0].address.rsplit(".", 1)[0] + ".50"  # the test's own block
    port = free_port(host)
    env = {**os.environ, "CPCONSOLE_METRICS_TOKEN": "scrape-secret"}
    watch = subprocess.Popen(
        [sys.executable, "-m", "cpconsole", "watch", str(profile), "--metrics", f"{host}:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://{host}:{port}/metrics"
    auth = {"Authorization": "Bearer scrape-secret"}
    try:
        for name in ("prefill-0", "prefill-1", "decode-0", "proxy"):
            await c.start(name)
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            scraped: dict[str, list[tuple[dict[str, str], float]]] = {}
            for _ in range(600):  # until the first npu-smi reads and health checks are in (a hang guard)
                try:
                    answer = await http.get(url, headers=auth)
                    scraped = families(answer.text)
                    if (
                        len(scraped.get("npu_chip_info_hbm_used_memory", [])) == 48
                        and state_of(scraped, "proxy") == "ready"
                    ):
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                await asyncio.sleep(0.1)
            assert (await http.get(url)).status_code == 401  # no token, no figures
            health = scraped["npu_chip_info_health_status"]
            assert {labels["node"] for labels, _ in health} == {"prefill-a", "prefill-b", "decode-a"}
            assert {labels["id"] for labels, _ in health} == {str(i) for i in range(16)}
            assert all(set(labels) == {"profile", "id", "node", "host"} for labels, _ in health)
            assert {labels["profile"] for family in scraped.values() for labels, _ in family} == {"demo"}
            assert scraped["machine_npu_nums"][0][1] == 16
            assert state_of(scraped, "decode-0") == "ready"
            ranks = scraped["cpconsole_rank_state"]  # one series a rank, its state a label
            assert len(ranks) == 48 and {labels["state"] for labels, _ in ranks} == {"ready"}
            assert {(labels["node"], labels["rank"], labels["id"]) for labels, _ in ranks} >= {("prefill-b", "20", "4")}
            check_dashboard(scraped)
            assert {labels["source"] for labels, _ in scraped["cpconsole_source_up"]} >= {"npu-smi"}
            await c.node.stop(c.handles["decode-0"], grace=3)  # the next scrapes see it go
            for _ in range(300):
                scraped = families((await http.get(url, headers=auth)).text)
                if state_of(scraped, "decode-0") != "ready":
                    break
                await asyncio.sleep(0.1)
            assert state_of(scraped, "decode-0") in ("exited", "failed", "stopped")
            down = {labels["state"] for labels, _ in scraped["cpconsole_rank_state"] if labels["instance"] == "decode"}
            assert down and "ready" not in down  # its ranks went with it
            await c.start("decode-0")  # a new run: counted as a restart once the session sees it
            for _ in range(300):
                scraped = families((await http.get(url, headers=auth)).text)
                if restarts_of(scraped, "decode-0") == 1:
                    break
                await asyncio.sleep(0.1)
            assert restarts_of(scraped, "decode-0") == 1 and restarts_of(scraped, "prefill-0") == 0
        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=60)
        assert watch.returncode == 0, err
        assert f"metrics: http://{host}:{port}/metrics" in out and "Traceback" not in err
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        await c.stop_all()


def test_sixteen_nodes_make_a_bounded_number_of_series() -> None:
    text = (PROFILES / "demo.yaml").read_text()
    spare = "".join(f"  spare-{i}: {{host: 127.0.0.{100 + i}, chips: 16}}\n" for i in range(13))
    plan = build_plan(load_profile_text(text.replace("\ninstances:", f"{spare}\ninstances:", 1)))
    assert len(plan.nodes) == 16
    now = time.time()
    npu = {node.name: PollResult("npu-smi", A3, now, None, now) for node in plan.nodes}
    views = {p.name: ProcessView(p.name, state="ready") for p in plan.processes}
    view = SessionView(now=now, processes=views, npu=npu, npu_history={}, servers={})
    ranks = rank_map(plan, views, [], {})
    collected = list(ViewCollector(lambda: Snapshot(plan, view, (), ranks)).collect())
    series = sum(len(family.samples) for family in collected)
    chips = 16 * len(A3.chips)
    assert (
        len(ranks) == 48 and series <= 7 * chips + 16 * 3 + 12 * len(plan.processes) + 10
    )  # per chip (or rank), per node, per process
    labels = {key for family in collected for sample in family.samples for key in sample.labels}
    allowed = {"profile", "id", "node", "host", "process", "role", "state", "source", "kind", "metric", "quantile"}
    allowed |= {"instance", "rank"}
    assert labels <= allowed | {"part", "digest", "run_key"}


async def test_the_console_serves_its_view_when_asked(tmp_path: Path) -> None:
    from cpconsole.core.session import Session
    from cpconsole.core.telemetry.exporter import bind
    from cpconsole.ui.app import ConsoleApp

    c = cluster(tmp_path)
    host = c.plan.nodes[0].address.rsplit(".", 1)[0] + ".50"
    sock = bind(host, 0)
    url = f"http://{host}:{sock.getsockname()[1]}/metrics"
    app = ConsoleApp(Session(c.plan), live=False, metrics=sock)
    async with app.run_test(size=(120, 40)) as pilot, httpx.AsyncClient(trust_env=False, timeout=5) as http:
        scraped: dict[str, list[tuple[dict[str, str], float]]] = {}
        for _ in range(100):  # until the console's worker serves (a hang guard)
            try:
                scraped = families((await http.get(url)).text)
                break
            except httpx.HTTPError:
                await pilot.pause(0.1)
        assert state_of(scraped, "decode-0") == "planned"  # nothing started: the view says so
        assert {labels["profile"] for labels, _ in scraped["cpconsole_deployment_info"]} == {"demo"}
    sock.close()
