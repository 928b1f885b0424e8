"""The HTTP client cpconsole talks to vLLM and to its proxy with."""

from __future__ import annotations

import httpx

# vLLM's API server (uvicorn, VLLM_HTTP_TIMEOUT_KEEP_ALIVE) closes a connection idle for 5 s. A client
# that keeps idle connections as long (httpx's default is 5 s too) reuses one just as the server closes
# it, and that request is reset. Letting go of idle connections well before the server does avoids it.
IDLE_CONNECTION_S = 2.0


def http_client(timeout: float | None, *, max_connections: int | None = 100) -> httpx.AsyncClient:
    """A client that ignores the environment's proxies (cluster addresses are never behind one) and
    drops its idle connections before any server we talk to would."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=IDLE_CONNECTION_S
    )
    return httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(timeout), limits=limits)
