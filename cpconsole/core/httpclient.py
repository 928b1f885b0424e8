"""The HTTP client cpconsole talks to vLLM and to its proxy with."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
from collections.abc import Awaitable, Callable
from typing import Literal

import httpx

# vLLM's API server (uvicorn, VLLM_HTTP_TIMEOUT_KEEP_ALIVE) closes a connection idle for 5 s. A client
# that keeps idle connections as long (httpx's default is 5 s too) reuses one just as the server closes
# it, and that request is reset. Letting go of idle connections well before the server does avoids it.
IDLE_CONNECTION_S = 2.0


def http_client(
    timeout: float | None,
    *,
    max_connections: int | None = 100,
    api_key: str | None = None,
    tls: ssl.SSLContext | None = None,
    route: Callable[[Callable[[str | None], httpx.AsyncHTTPTransport]], httpx.AsyncBaseTransport] | None = None,
) -> httpx.AsyncClient:
    """A client that ignores the environment's proxies (cluster addresses are never behind one),
    drops its idle connections before any server we talk to would, and sends the deployment's API
    key (when it has one) with every request. `route`, given how to make a connection pool (over
    TCP, or a UNIX socket's path), makes the transport that picks one per request (the nodes'
    http routes)."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=IDLE_CONNECTION_S
    )
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    verify: ssl.SSLContext | bool = tls if tls is not None else True

    def pool(uds: str | None) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(limits=limits, verify=verify, trust_env=False, uds=uds)

    return httpx.AsyncClient(
        trust_env=False,
        timeout=httpx.Timeout(timeout),
        headers=headers,
        transport=route(pool) if route is not None else pool(None),
    )


class ClientShards:
    """Several clients taken in turn, for hundreds of requests at once. httpcore's pool walks all of
    its connections each time a request starts or ends (httpcore 1.0.9: encode/httpcore#1035), so
    one pool's cost grows with the square of the streams (measured: at 200 streams through the
    proxy, three quarters of its CPU); sixteen pools each walk a sixteenth."""

    def __init__(self, shards: int, timeout: float | None, *, api_key: str | None = None) -> None:
        tls = ssl.create_default_context()  # one: loading the CA store takes ~30 ms per client
        self.clients = [http_client(timeout, max_connections=None, api_key=api_key, tls=tls) for _ in range(shards)]
        self._turn = itertools.cycle(self.clients)

    def pick(self) -> httpx.AsyncClient:
        return next(self._turn)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def status_text(status: int) -> str:
    """An HTTP status as an operator reads it: a 401 is a key problem, not a dead server."""
    if status == 401:
        return "HTTP 401: wrong or missing API key (the profile's api_key)"
    return f"HTTP {status}"


async def once_more_if_stale(send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """Send, and once more when a kept-alive connection turned out closed by the server as it was
    reused ("Server disconnected without sending a response": nothing of the request was
    processed); a second failure is real."""
    try:
        return await send()
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return await send()


async def tcp_state(host: str, port: int, timeout: float) -> Literal["open", "refused", "unreachable"]:
    """What a TCP connection to host:port finds from here: a listener, the address without one, or
    no way there (no route, no answer within `timeout`)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except ConnectionRefusedError:
        return "refused"
    except (OSError, TimeoutError):
        return "unreachable"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return "open"
