"""Delivery of notifications to one webhook: in order, retried with backoff, rate-limited."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from ..profile.schema import Webhook
from ..tasks import cancel_and_wait
from .message import Notification

QUEUE = 100  # notifications waiting for a slow receiver; past it they are dropped and counted
MAX_BACKOFF_S = 300.0


@dataclass
class Delivery:
    """What happened to a channel's notifications, for the operator to see."""

    delivered: int = 0
    retried: int = 0  # tries after a failed one
    failed: int = 0  # notifications given up on
    dropped: int = 0  # held back by the rate limit or a full queue
    last_error: str = ""  # of the last failure; cleared by the next delivery


def shown_url(url: str) -> str:
    """The receiver as shown and logged: scheme, host and path; a query or user part can hold a secret."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def worth_retrying(status: int) -> bool:
    """A receiver that is down or busy may take it later; one that refuses it (4xx) will not."""
    return status >= 500 or status in (408, 429)


class WebhookChannel:
    def __init__(self, hook: Webhook, http: httpx.AsyncClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.hook = hook
        self.name = f"webhook {shown_url(hook.url)}"
        self.delivery = Delivery()
        self._http = http
        self._clock = clock
        self._sent_at: deque[float] = deque()  # starts of the last minute's sends, for the rate limit
        self._dropped_since_queued = 0
        self._queue: asyncio.Queue[tuple[Notification, int]] = asyncio.Queue(QUEUE)
        self._worker: asyncio.Task[None] | None = None

    def offer(self, note: Notification) -> None:
        """Queue it for delivery, unless the rate limit or the queue says no (then it is counted)."""
        now = self._clock()
        while self._sent_at and now - self._sent_at[0] >= 60:
            self._sent_at.popleft()
        if len(self._sent_at) >= self.hook.max_per_minute or self._queue.full():
            self.delivery.dropped += 1
            self._dropped_since_queued += 1
            return
        self._sent_at.append(now)
        self._queue.put_nowait((note, self._dropped_since_queued))
        self._dropped_since_queued = 0
        if self._worker is None:
            self._worker = asyncio.create_task(self._deliver_in_order())

    async def _deliver_in_order(self) -> None:
        while True:
            note, dropped_before = await self._queue.get()
            await self.send(note, dropped_before)

    async def send(self, note: Notification, dropped_before: int = 0) -> str | None:
        """POST it, retrying what may pass later; None when delivered, else why not. `dropped_before`:
        how many the rate limit held back since the one queued before it."""
        headers = {}
        if self.hook.token_env:
            token = os.environ.get(self.hook.token_env)
            if not token:
                return self._failed(f"${self.hook.token_env} is not set on this host (its bearer token)")
            headers["Authorization"] = f"Bearer {token}"
        body = note.payload(dropped_before)
        error = ""
        for attempt in range(self.hook.retries + 1):
            if attempt:
                self.delivery.retried += 1
                await asyncio.sleep(min(self.hook.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
            try:
                answer = await self._http.post(self.hook.url, json=body, headers=headers, timeout=10)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if answer.is_success:
                self.delivery.delivered += 1
                self.delivery.last_error = ""
                return None
            error = f"HTTP {answer.status_code}"
            if not worth_retrying(answer.status_code):
                break
        tries = attempt + 1
        return self._failed(f"{error} after {tries} tr{'y' if tries == 1 else 'ies'}")

    def _failed(self, error: str) -> str:
        self.delivery.failed += 1
        self.delivery.last_error = error
        return error

    async def close(self) -> None:
        await cancel_and_wait(self._worker)
