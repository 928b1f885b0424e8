"""Telemetry of one deployment: every poller (npu-smi per node; /metrics, /health and a 1-token
probe per API server), the stall detectors fed by them, and the short histories the console
draws. `follow` keeps the per-process parts in step with what runs; nothing here raises for what
a node or a server does."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from ..plan import LaunchPlan, NodePlan, ProcessPlan
from ..remote import RemoteError, Transport
from .health import ChipReading, ProbeAnswer, StallDetector, probe
from .npu_smi import NpuSmiInfo, parse_info
from .pollers import Poller, PollResult, get_once_more_if_stale
from .proxy_metrics import parse_proxy_metrics
from .router_metrics import parse_router_metrics
from .vllm_metrics import EngineMetrics, VllmMetrics, parse_metrics
from .window import MetricsWindow

T = TypeVar("T")
NpuSample = tuple[float, float]  # one npu-smi reading of a node: (HBM used, AICore busy), as fractions


@dataclass(frozen=True)
class Readings:
    """The latest values the alert rules read: npu-smi per node, /metrics per running server."""

    npu: dict[str, NpuSmiInfo | None]
    metrics: dict[str, VllmMetrics | None]


def parser_for(proc: ProcessPlan) -> Callable[[str], VllmMetrics]:
    """How a server's /metrics reads: vLLM's, cpconsole's proxy's or vllm-router's."""
    if proc.proxy_kind == "vllm-router":
        return parse_router_metrics
    return parse_proxy_metrics if proc.role == "proxy" else parse_metrics


class Telemetry:
    def __init__(
        self,
        plan: LaunchPlan,
        transports: Mapping[str, Transport],
        http: httpx.AsyncClient,
        *,
        npu_interval: float = 5.0,
        npu_timeout: float = 15.0,
        metrics_interval: float = 5.0,
        health_interval: float = 5.0,
        http_timeout: float = 3.0,
        probe_interval: float = 30.0,
        on_result: Callable[[PollResult[object]], None] | None = None,
    ) -> None:
        self.plan = plan
        self.http = http
        self.windows: dict[str, MetricsWindow] = {}
        self.class_windows: dict[str, dict[str, MetricsWindow]] = {}  # the proxy's, by prompt-length class
        self.npu: dict[str, Poller[NpuSmiInfo]] = {}
        self.metrics: dict[str, Poller[VllmMetrics]] = {}
        self.health: dict[str, Poller[float]] = {}
        self.probes: dict[str, Poller[ProbeAnswer]] = {}  # a 1-token request to every API server and the proxy
        self._probes_sent: dict[str, deque[float]] = {}  # when, per server: left out of its latencies
        self.stalls: dict[str, StallDetector] = {}
        self.npu_history: dict[str, list[NpuSample]] = {}  # newest last
        self._npu_seen: dict[str, float] = {}
        self._on_result = on_result
        for node in (n for n in plan.nodes if n.chips):  # nothing to poll on a CPU node
            fetch_npu = self._npu_fetch(node, transports[node.name])
            self.npu[node.name] = self._poller(f"npu-smi@{node.name}", fetch_npu, npu_interval, npu_timeout)
        for proc in (p for p in plan.processes if p.http_port):
            name = proc.name
            self.windows[name] = MetricsWindow()
            if proc.role != "proxy":  # a proxy computes nothing: nothing of it can stall
                self.stalls[name] = StallDetector(plan.alerts.stall_after_s, plan.alerts.computing_stall_after_s)
            fetch_metrics = self._metrics_fetch(proc, parser_for(proc))
            self.metrics[name] = self._poller(f"metrics@{name}", fetch_metrics, metrics_interval, http_timeout)
            self.health[name] = self._poller(f"health@{name}", self._health_fetch(proc), health_interval, http_timeout)
            # probes are not reported one by one: the stall detectors read them
            self.probes[name] = Poller(f"probe@{name}", self._probe_fetch(proc), interval=probe_interval, timeout=60.0)

    def _poller(self, source: str, fetch: Callable[[], Awaitable[T]], interval: float, timeout: float) -> Poller[T]:
        return Poller(source, fetch, interval=interval, timeout=timeout, on_result=self._emit)

    def _emit(self, result: PollResult[object]) -> None:
        if self._on_result:
            self._on_result(result)

    @staticmethod
    def _npu_fetch(node: NodePlan, transport: Transport) -> Callable[[], Awaitable[NpuSmiInfo]]:
        async def fetch() -> NpuSmiInfo:
            result = await transport.run(node.tool("npu_smi", "info"), timeout=3600)  # the poller times out
            if not result.ok:
                detail = (result.stderr or result.stdout).decode("utf-8", "replace").strip().splitlines()
                raise RemoteError(node.name, f"npu-smi exited {result.exit_code}: {detail[-1] if detail else ''}")
            return parse_info(result.text())

        return fetch

    def _metrics_fetch(
        self, proc: ProcessPlan, parse: Callable[[str], VllmMetrics]
    ) -> Callable[[], Awaitable[VllmMetrics]]:
        url = proc.metrics_url

        async def fetch() -> VllmMetrics:
            answer = await get_once_more_if_stale(self.http, url)
            answer.raise_for_status()
            metrics = parse(answer.text)
            self.record(proc.name, metrics, time.time())
            return metrics

        return fetch

    def record(self, name: str, metrics: VllmMetrics, at: float) -> None:
        """A scrape into the server's window (and, for the proxy, its prompt-length classes' ones)."""
        window = self.windows[name]
        seen_before = window.first_at
        window.add(metrics, at)
        per_class = self.class_windows.setdefault(name, {})
        for label, engine in metrics.classes.items():
            if label not in per_class:  # a new class: nothing of it was observed at the window's start
                per_class[label] = MetricsWindow()
                if seen_before is not None:
                    per_class[label].add(EngineMetrics(), seen_before)
            per_class[label].add(engine, at)

    def _health_fetch(self, proc: ProcessPlan) -> Callable[[], Awaitable[float]]:
        url = proc.base_url + proc.health_path

        async def fetch() -> float:
            started = time.monotonic()
            answer = await get_once_more_if_stale(self.http, url)
            answer.raise_for_status()
            return (time.monotonic() - started) * 1000

        return fetch

    def _probe_fetch(self, proc: ProcessPlan) -> Callable[[], Awaitable[ProbeAnswer]]:
        sent = self._probes_sent.setdefault(proc.name, deque(maxlen=1000))

        async def fetch() -> ProbeAnswer:
            busy = self.busy(proc.name)
            if busy:
                return ProbeAnswer(busy=busy)
            sent.append(time.time())
            return ProbeAnswer(await probe(self.http, proc.base_url, self.plan.model_name))

        return fetch

    def busy(self, name: str) -> str:
        """Why a server gets no probe now (its running requests reach max_num_seqs × its engines:
        one more would queue behind a long prefill and time out, or take a slot from real work)."""
        poller = self.metrics.get(name)
        capacity = self.plan.process(name).capacity
        latest = poller.latest.value if poller else None
        if capacity is None or latest is None or latest.total.running < capacity:
            return ""
        return f"{latest.total.running:.0f}/{capacity} running"

    def probes_in_window(self, name: str) -> int:
        """How many of the console's probes the server's metrics window holds (none for the proxy:
        it counts them apart itself)."""
        bounds = self.windows[name].bounds
        if bounds is None or self.plan.process(name).role == "proxy":
            return 0
        return sum(1 for at in self._probes_sent.get(name, ()) if bounds[0] <= at <= bounds[1])

    def new_run(self, name: str) -> None:
        """The process runs anew (restarted, or started elsewhere): its polls, windows and stall
        detector start afresh. An old run's failed probe or growing backoff would otherwise hold
        against the new one — a restarted server that answers could show stalled."""
        if name not in self.windows:
            return
        for pollers in (self.metrics, self.health, self.probes):
            pollers[name].forget()
        self.windows[name] = MetricsWindow()
        self.class_windows.pop(name, None)
        if name in self._probes_sent:
            self._probes_sent[name].clear()  # the probe's fetch holds this very deque
        if name in self.stalls:
            self.stalls[name] = StallDetector(self.plan.alerts.stall_after_s, self.plan.alerts.computing_stall_after_s)

    def start_nodes(self) -> None:
        for poller in self.npu.values():
            poller.start()

    async def sync(self, running: Iterable[str]) -> None:
        """/metrics and /health follow the process: on while it runs, off when it does not."""
        await _switch([*self.metrics.items(), *self.health.items()], set(running))

    async def follow(self, running: Iterable[str], ready: Iterable[str], now: float) -> dict[str, str | None]:
        """One step of watching: pollers on for what runs, probes for what is ready, the stall
        detectors fed with the latest samples, the NPU history extended. Answers each running
        server's stall reason (None: not stalled)."""
        alive = set(running)
        await self.sync(alive)
        await _switch(list(self.probes.items()), set(ready))
        self._note_npu_history()
        return {name: self._observe_stall(name, now) for name in self.stalls if name in alive}

    def _observe_stall(self, name: str, now: float) -> str | None:
        detector = self.stalls[name]
        sample = self.metrics[name].latest
        if sample.value is not None and sample.error is None:
            total = sample.value.total
            chips = self._chips(self.plan.process(name).node)
            taken = sample.ok_at if sample.ok_at is not None else now
            detector.observe(taken, running=total.running, waiting=total.waiting, progress=total.progress, chips=chips)
        health, tried = self.health[name].latest, self.probes[name].latest
        held_back = tried.error is None and tried.value is not None and bool(tried.value.busy)
        if tried.at and (tried.value is not None or tried.error) and not held_back:
            detector.observe_probe(
                now, health_ok=health.error is None and health.value is not None, probe_ok=tried.error is None
            )
        return detector.reason

    def _chips(self, node: str, busy_pct: float = 1.0) -> ChipReading | None:
        """The node's chips in its latest npu-smi answer: any computing (AI core busy)? None for a
        node without NPUs; a node not yet read counts as read long ago."""
        poller = self.npu.get(node)
        if poller is None:
            return None
        info, read_at = poller.latest.value, poller.latest.ok_at
        busy = bool(info and any((chip.aicore_pct or 0) >= busy_pct for chip in info.chips))
        return ChipReading(busy, read_at if read_at is not None else -math.inf)

    def _note_npu_history(self, keep: int = 120) -> None:
        for node, poller in self.npu.items():
            info, ok_at = poller.latest.value, poller.latest.ok_at
            history = self.npu_history.setdefault(node, [])
            if info is None or not info.chips or ok_at is None or ok_at == self._npu_seen.get(node):
                continue
            self._npu_seen[node] = ok_at
            used = sum(c.hbm_used_mb or 0 for c in info.chips)
            total = sum(c.hbm_total_mb or 0 for c in info.chips) or 1
            aicore = sum(c.aicore_pct or 0 for c in info.chips) / (100 * len(info.chips))
            history.append((used / total, aicore))
            del history[:-keep]

    def readings(self, running: Iterable[str]) -> Readings:
        alive = set(running)
        return Readings(
            npu={n: p.latest.value for n, p in self.npu.items()},
            metrics={n: p.latest.value for n, p in self.metrics.items() if n in alive},
        )

    async def poll_once(self, running: Iterable[str]) -> list[PollResult[Any]]:
        """One round of every node's npu-smi and every running server's /metrics, at once (for a
        verb that looks once rather than watching); failures are in the results."""
        alive = set(running)
        pollers: list[Poller[Any]] = [*self.npu.values(), *(p for n, p in self.metrics.items() if n in alive)]
        return list(await asyncio.gather(*(p.poll_once() for p in pollers)))

    async def stop(self) -> None:
        every: list[Poller[Any]] = [*self.npu.values(), *self.metrics.values(), *self.health.values()]
        for poller in [*every, *self.probes.values()]:
            await poller.stop()


async def _switch(pollers: list[tuple[str, Poller[Any]]], on: set[str]) -> None:
    for name, poller in pollers:
        if name in on:
            poller.start()
        elif poller.running:
            await poller.stop()
