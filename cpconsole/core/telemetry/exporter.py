"""The console's view as Prometheus text, from what the session already polls (no polling of its
own). Chips under Ascend's NPU Exporter names (MindCluster's: `npu_chip_info_*` with an `id` label,
so its dashboards work) with `node` and `host` added; each process's state (a gauge per state, 0 or
1), its start, its health latency and its last failure's kind; each API server's figures with its
process, role and node; the proxy's traffic; the alerts as `ALERTS`-like gauges; the exporter's own
scrape time and each source's age. Label values are bounded: names from the profile, states, cause
kinds — never text from a log."""

from __future__ import annotations

import hmac
import socket
import time
from collections.abc import Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..orchestrate.states import STATES
from ..view import Snapshot

HEALTHY = "OK"  # npu-smi's word for a healthy chip (npu_chip_info_health_status 1)


class ViewCollector(Collector):
    """A prometheus_client collector over the session's view, read at each scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        shot = self._snapshot()
        age = GaugeMetricFamily(
            "cpconsole_source_age_seconds",
            "Seconds since the source was last read",
            labels=["profile", "source", "node"],
        )
        up = GaugeMetricFamily(
            "cpconsole_source_up", "1 when the source's last read worked", labels=["profile", "source", "node"]
        )
        info = InfoMetricFamily("cpconsole_deployment", "The deployment this exporter watches", labels=["profile"])
        info.add_metric([shot.plan.profile], {"digest": shot.plan.digest, "run_key": shot.plan.run_key})
        yield info
        yield from self._chips(shot, age, up)
        yield from self._processes(shot)
        yield from self._servers(shot, age, up)
        yield from self._alerts(shot)
        yield from (age, up)
        took = GaugeMetricFamily(
            "cpconsole_exporter_scrape_duration_seconds", "Time this scrape took to build", labels=["profile"]
        )
        took.add_metric([shot.plan.profile], time.monotonic() - started)
        yield took

    def _chips(self, shot: Snapshot, age: GaugeMetricFamily, up: GaugeMetricFamily) -> Iterator[Metric]:
        labels = ["profile", "id", "node", "host"]
        families = {
            "hbm_used": GaugeMetricFamily("npu_chip_info_hbm_used_memory", "HBM in use, MB", labels=labels),
            "hbm_total": GaugeMetricFamily("npu_chip_info_hbm_total_memory", "HBM in all, MB", labels=labels),
            "health": GaugeMetricFamily("npu_chip_info_health_status", "1 healthy, 0 not", labels=labels),
            "util": GaugeMetricFamily("npu_chip_info_utilization", "AI Core utilisation, percent", labels=labels),
            "temp": GaugeMetricFamily("npu_chip_info_temperature", "Chip temperature, °C", labels=labels),
            "power": GaugeMetricFamily("npu_chip_info_power", "Chip power, W", labels=labels),
        }
        count = GaugeMetricFamily("machine_npu_nums", "NPU chips the node shows", labels=["profile", "node", "host"])
        profile = shot.plan.profile
        for node in shot.plan.nodes:
            polled = shot.view.npu.get(node.name)
            if polled is None:
                continue
            read = polled.age(shot.view.now)
            if read is not None:
                age.add_metric([profile, "npu-smi", node.name], read)
            up.add_metric([profile, "npu-smi", node.name], 0.0 if polled.stale else 1.0)
            if polled.value is None:
                continue
            count.add_metric([profile, node.name, node.host], len(polled.value.chips))
            for index, chip in enumerate(polled.value.chips):
                key = [profile, str(chip.phy_id if chip.phy_id is not None else index), node.name, node.host]
                families["health"].add_metric(key, 1.0 if chip.health == HEALTHY else 0.0)
                for name, value in (
                    ("hbm_used", chip.hbm_used_mb),
                    ("hbm_total", chip.hbm_total_mb),
                    ("util", chip.aicore_pct),
                    ("temp", chip.temp_c),
                    ("power", chip.power_w),
                ):
                    if value is not None:
                        families[name].add_metric(key, float(value))
        yield from families.values()
        yield count

    def _processes(self, shot: Snapshot) -> Iterator[Metric]:
        labels = ["profile", "process", "role", "node"]
        state = GaugeMetricFamily(
            "cpconsole_process_state", "1 for the state the process is in", labels=[*labels, "state"]
        )
        since = GaugeMetricFamily("cpconsole_process_start_time_seconds", "When it started (Unix time)", labels=labels)
        health = GaugeMetricFamily(
            "cpconsole_process_health_seconds", "Its last /health answer's latency", labels=labels
        )
        failure = InfoMetricFamily("cpconsole_process_failure", "The kind of its last failure's cause", labels=labels)
        restarts = CounterMetricFamily(
            "cpconsole_process_restarts", "Runs after the first this exporter's session saw", labels=labels
        )
        for proc in shot.plan.processes:
            view = shot.view.processes.get(proc.name)
            if view is None:
                continue
            key = [shot.plan.profile, proc.name, proc.role, proc.node]
            for name in sorted(STATES):
                state.add_metric([*key, name], 1.0 if view.state == name else 0.0)
            started = view.started_epoch
            if started is not None:
                since.add_metric(key, started)
            if view.health_ms is not None:
                health.add_metric(key, view.health_ms / 1000)
            if view.cause is not None:
                failure.add_metric(key, {"kind": view.cause.kind})
            restarts.add_metric(key, float(shot.restarts.get(proc.name, 0)))
        yield from (state, since, health, failure, restarts)
        ranks = GaugeMetricFamily(
            "cpconsole_rank_state",
            "1 per rank, its state in the label (planned, stopped, joining, loading, ready, failed, down)",
            labels=["profile", "instance", "rank", "node", "id", "state"],
        )
        for rank in shot.ranks:
            ranks.add_metric(
                [shot.plan.profile, rank.instance, str(rank.rank), rank.node, str(rank.device), rank.state], 1.0
            )
        yield ranks

    def _servers(self, shot: Snapshot, age: GaugeMetricFamily, up: GaugeMetricFamily) -> Iterator[Metric]:
        labels = ["profile", "process", "role", "node"]
        profile = shot.plan.profile
        running = GaugeMetricFamily("cpconsole_vllm_requests_running", "Requests its engines run", labels=labels)
        waiting = GaugeMetricFamily("cpconsole_vllm_requests_waiting", "Requests waiting", labels=labels)
        kv = GaugeMetricFamily("cpconsole_vllm_kv_cache_usage_ratio", "KV cache in use, 0 to 1", labels=labels)
        rates = GaugeMetricFamily(
            "cpconsole_vllm_tokens_per_second", "Tokens a second over the last minute", labels=[*labels, "kind"]
        )
        latency = GaugeMetricFamily(
            "cpconsole_vllm_latency_seconds", "Over the last minute", labels=[*labels, "metric", "quantile"]
        )
        traffic = GaugeMetricFamily(
            "cpconsole_proxy_latency_seconds",
            "Requests through the proxy, last minute",
            labels=["profile", "part", "quantile"],
        )
        answered = GaugeMetricFamily(
            "cpconsole_proxy_requests_per_second", "Answered a second, last minute", labels=["profile"]
        )
        for proc in shot.plan.processes:
            figures = shot.view.servers.get(proc.name)
            if figures is None:
                continue
            key = [profile, proc.name, proc.role, proc.node]
            read = figures.scrape.age(shot.view.now)
            if read is not None:
                age.add_metric([profile, f"metrics {proc.name}", proc.node], read)
            up.add_metric([profile, f"metrics {proc.name}", proc.node], 0.0 if figures.scrape.stale else 1.0)
            if figures.latest is not None:
                running.add_metric(key, figures.latest.running)
                waiting.add_metric(key, figures.latest.waiting)
                if figures.latest.kv_cache_usage is not None:
                    kv.add_metric(key, figures.latest.kv_cache_usage)
            for kind, rate in (
                ("prompt", figures.prompt_tokens_per_s),
                ("generation", figures.generation_tokens_per_s),
            ):
                if rate is not None:
                    rates.add_metric([*key, kind], rate)
            for metric, pair in (("ttft", figures.ttft), ("itl", figures.itl)):
                for quantile, value in zip(("0.5", "0.99"), pair, strict=True):
                    if value is not None:
                        latency.add_metric([*key, metric, quantile], value)
            if figures.traffic is not None:
                if figures.traffic.per_s is not None:
                    answered.add_metric([profile], figures.traffic.per_s)
                parts = (("ttft", figures.traffic.ttft), ("prefill", figures.traffic.prefill))
                for part, pair in (*parts, ("handoff", figures.traffic.handoff)):
                    for quantile, value in zip(("0.5", "0.99"), pair, strict=True):
                        if value is not None:
                            traffic.add_metric([profile, part, quantile], value)
        yield from (running, waiting, kv, rates, latency, traffic, answered)

    def _alerts(self, shot: Snapshot) -> Iterator[Metric]:
        alerts = GaugeMetricFamily(
            "cpconsole_alerts", "1 for each alert raised now", labels=["profile", "alertname", "severity", "source"]
        )
        for alert in shot.alerts:  # a known cause's kind, else the condition's (the key's first part)
            name = alert.kind or alert.key.split(":", 1)[0]
            alerts.add_metric([shot.plan.profile, name, alert.severity, alert.source], 1.0)
        yield alerts


def _registry(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ViewCollector(snapshot))
    return registry


def exposition(snapshot: Snapshot) -> str:
    """One snapshot as the Prometheus text a scrape would get (what an incident bundle keeps)."""
    return generate_latest(_registry(lambda: snapshot)).decode()


def metrics_app(snapshot: Callable[[], Snapshot], token: str | None = None) -> Starlette:
    """GET /metrics: the view as Prometheus text (prometheus_client builds it); 401 without the
    token when one is set; nothing else is served."""
    registry = _registry(snapshot)

    async def metrics(request: Request) -> Response:
        if token:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return Response("wrong or missing bearer token\n", status_code=401)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])


def bind(host: str, port: int) -> socket.socket:
    """The exporter's listening socket (OSError: taken, or no such address here)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_metrics(app: Starlette, sock: socket.socket) -> None:
    """The exporter on its socket until cancelled or signalled (uvicorn hands SIGINT and SIGTERM
    back to the caller's handlers when it ends); no access log: a scrape every few seconds is no news."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    await uvicorn.Server(config).serve(sockets=[sock])
