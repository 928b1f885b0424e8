"""uvicorn with the limits a proxy facing clients needs: a request head must arrive whole within
`head_timeout` seconds of its first byte (uvicorn waits for one forever), an idle kept-alive connection
is kept longer than clients keep theirs, and past `limit_concurrency` connections new requests get 503."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

# Longer than any common client keeps an idle connection (httpx 5 s, aiohttp 15 s, nginx upstreams
# 60 s), and nginx's own default: a server that closes first races the client's next request on that
# connection, which is then reset — the client sees a failed request though nothing was wrong.
KEEP_ALIVE_S = 75


class HeadTimeoutH11Protocol(H11Protocol):
    """Closes a connection whose request head is not complete `head_timeout` seconds after the
    connection opened or, on a kept-alive connection, after the next request's first byte. An idle
    kept-alive connection is uvicorn's to close (its keep-alive timeout)."""

    def __init__(self, *args: Any, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_overdue)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _head_overdue(self) -> None:
        if not self._in_flight() and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and not self._in_flight():  # the first byte of the next request
            self._arm()
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._disarm()
        super().on_response_complete()
        if self.conn.trailing_data[0] and not self._in_flight():  # part of a pipelined head is waiting
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def serve(
    app: Any, *, host: str, port: int, log_level: str, head_timeout: float, keep_alive: int, limit_concurrency: int
) -> None:
    protocol = functools.partial(HeadTimeoutH11Protocol, head_timeout=head_timeout)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol,  # type: ignore[arg-type]
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=keep_alive,
        h11_max_incomplete_event_size=64 << 10,
    )
    uvicorn.Server(config).run()
