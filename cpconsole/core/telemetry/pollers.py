"""Pollers: npu-smi per node, /metrics and /health per API server. A poll never overlaps the
previous one and always has a timeout; a failing source backs off and keeps its last good sample,
marked stale with its age. Failures are values (`PollResult.error`), never exceptions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from ..plan import LaunchPlan, NodePlan, ProcessPlan
from ..remote import RemoteError, Transport
from ..remote.tailing import Backoff
from .npu_smi import NpuSmiInfo, ParseError, parse_info
from .vllm_metrics import MetricsParseError, VllmMetrics, parse_metrics
from .window import MetricsWindow

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class PollResult(Generic[T_co]):
    source: str
    value: T_co | None  # the last good value, even when this poll failed
    ok_at: float | None  # when that value was read
    error: str | None  # why this poll failed, if it did
    at: float  # when this poll ended

    def age(self, now: float | None = None) -> float | None:
        return None if self.ok_at is None else (now or time.time()) - self.ok_at

    @property
    def stale(self) -> bool:
        return self.error is not None


class Poller(Generic[T]):
    def __init__(
        self,
        source: str,
        fetch: Callable[[], Awaitable[T]],
        *,
        interval: float,
        timeout: float,
        on_result: Callable[[PollResult[T]], None] | None = None,
    ) -> None:
        self.source = source
        self.fetch = fetch
        self.interval = interval
        self.timeout = timeout
        self.on_result = on_result
        self.latest: PollResult[T] = PollResult(source, None, None, None, time.time())
        self._backoff = Backoff(first=interval, ceiling=max(interval, 60.0))
        self._task: asyncio.Task[None] | None = None

    async def poll_once(self) -> PollResult[T]:
        try:
            value = await asyncio.wait_for(self.fetch(), self.timeout)
        except TimeoutError:
            result = self._failed(f"no answer within {self.timeout:g} s")
        except (RemoteError, httpx.HTTPError, ParseError, MetricsParseError, ValueError) as exc:
            result = self._failed(str(exc) or type(exc).__name__)
        else:
            result = PollResult(self.source, value, time.time(), None, time.time())
            self._backoff.reset()
        self.latest = result
        if self.on_result:
            self.on_result(result)
        return result

    def _failed(self, error: str) -> PollResult[T]:
        return PollResult(self.source, self.latest.value, self.latest.ok_at, error, time.time())

    async def run(self) -> None:
        while True:
            result = await self.poll_once()
            await asyncio.sleep(self.interval if result.error is None else self._backoff.next())

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()


async def get_once_more_if_stale(http: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET, and once more when a kept-alive connection turned out closed by the server (it closed it
    as we reused it: "Server disconnected without sending a response"); a second failure is real."""
    try:
        return await http.get(url)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return await http.get(url)


class Telemetry:
    """Every poller of a deployment: one npu-smi poller per node, /metrics and /health pollers for
    each vLLM API server while it runs. `sync` starts and stops the per-process ones."""

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
        on_result: Callable[[PollResult[object]], None] | None = None,
    ) -> None:
        self.plan = plan
        self.http = http
        self.windows: dict[str, MetricsWindow] = {}
        self.npu: dict[str, Poller[NpuSmiInfo]] = {}
        self.metrics: dict[str, Poller[VllmMetrics]] = {}
        self.health: dict[str, Poller[float]] = {}
        self._on_result = on_result
        for node in (n for n in plan.nodes if n.chips):  # nothing to poll on a CPU node
            self.npu[node.name] = Poller(
                f"npu-smi@{node.name}", self._npu_fetch(node, transports[node.name]),
                interval=npu_interval, timeout=npu_timeout, on_result=self._emit,
            )  # fmt: skip
        for proc in plan.processes:
            if proc.http_port and proc.role != "proxy":
                self.windows[proc.name] = MetricsWindow()
                self.metrics[proc.name] = Poller(
                    f"metrics@{proc.name}", self._metrics_fetch(proc),
                    interval=metrics_interval, timeout=http_timeout, on_result=self._emit,
                )  # fmt: skip
            if proc.http_port:
                self.health[proc.name] = Poller(
                    f"health@{proc.name}", self._health_fetch(proc),
                    interval=health_interval, timeout=http_timeout, on_result=self._emit,
                )  # fmt: skip

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

    def _metrics_fetch(self, proc: ProcessPlan) -> Callable[[], Awaitable[VllmMetrics]]:
        url = proc.base_url + "/metrics"

        async def fetch() -> VllmMetrics:
            answer = await get_once_more_if_stale(self.http, url)
            answer.raise_for_status()
            metrics = parse_metrics(answer.text)
            self.windows[proc.name].add(metrics, time.time())
            return metrics

        return fetch

    def _health_fetch(self, proc: ProcessPlan) -> Callable[[], Awaitable[float]]:
        url = proc.base_url + proc.health_path

        async def fetch() -> float:
            started = time.monotonic()
            answer = await get_once_more_if_stale(self.http, url)
            answer.raise_for_status()
            return (time.monotonic() - started) * 1000

        return fetch

    def start_nodes(self) -> None:
        for poller in self.npu.values():
            poller.start()

    async def sync(self, running: Iterable[str]) -> None:
        """Per-process pollers follow the process: on while it runs, off when it does not."""
        alive = set(running)
        for name, poller in self._process_pollers():
            if name in alive:
                poller.start()
            elif poller.running:
                await poller.stop()

    def _process_pollers(self) -> list[tuple[str, Poller[VllmMetrics] | Poller[float]]]:
        return [*self.metrics.items(), *self.health.items()]

    async def stop(self) -> None:
        for npu in self.npu.values():
            await npu.stop()
        for _, poller in self._process_pollers():
            await poller.stop()
