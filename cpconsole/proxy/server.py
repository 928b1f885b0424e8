"""uvicorn with the limits a proxy facing clients needs: a connection that has not sent a whole
request head within `header_timeout` seconds is closed (uvicorn waits for one forever), and
past `limit_concurrency` connections new requests get 503."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadTimeoutH11Protocol(H11Protocol):
    """Closes a connection that sends no complete request head within `head_timeout`: after it
    opens, and again after each response (a kept-alive connection waiting for its next request)."""

    def __init__(self, *args: Any, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_overdue)

    def _head_overdue(self) -> None:
        in_flight = self.cycle is not None and not self.cycle.response_complete
        if not in_flight and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)


def serve(app: Any, *, host: str, port: int, log_level: str, head_timeout: float, limit_concurrency: int) -> None:
    protocol = functools.partial(HeadTimeoutH11Protocol, head_timeout=head_timeout)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol,  # type: ignore[arg-type]
        limit_concurrency=limit_concurrency,
        h11_max_incomplete_event_size=64 << 10,
    )
    uvicorn.Server(config).run()
