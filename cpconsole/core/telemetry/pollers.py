"""Pollers: npu-smi per node, /metrics and /health per API server. A poll never overlaps the
previous one and always has a timeout; a failing source backs off and keeps its last good sample,
marked stale with its age. Failures are values (`PollResult.error`), never exceptions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from ..httpclient import once_more_if_stale
from ..remote import RemoteError
from ..remote.tailing import Backoff
from ..tasks import cancel_and_wait
from .npu_smi import ParseError
from .vllm_metrics import MetricsParseError

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

    def forget(self) -> None:
        """Drop what was learnt (the last result, the backoff of its failures): its source is a new
        process now, and what its predecessor answered says nothing of it."""
        self.latest = PollResult(self.source, None, None, None, time.time())
        self._backoff.reset()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()


async def get_once_more_if_stale(http: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET, once more on a kept-alive connection the server had closed (httpclient.once_more_if_stale)."""
    return await once_more_if_stale(lambda: http.get(url))
