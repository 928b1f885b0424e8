"""The HTTP client cpconsole talks to vLLM and to its proxy with."""

from __future__ import annotations

import httpx

# vLLM's API server (uvicorn, VLLM_HTTP_TIMEOUT_KEEP_ALIVE) closes a connection idle for 5 s. A client
# that keeps idle connections as long (httpx's default is 5 s too) reuses one just as the server closes
# it, and that request is reset. Letting go of idle connections well before the server does avoids it.
IDLE_CONNECTION_S = 2.0


def http_client(
    timeout: float | None, *, max_connections: int | None = 100, api_key: str | None = None
) -> httpx.AsyncClient:
    """A client that ignores the environment's proxies (cluster addresses are never behind one),
    drops its idle connections before any server we talk to would, and sends the deployment's API
    key (when it has one) with every request."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=IDLE_CONNECTION_S
    )
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    return httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(timeout), limits=limits, headers=headers)


def status_text(status: int) -> str:
    """An HTTP status as an operator reads it: a 401 is a key problem, not a dead server."""
    if status == 401:
        return "HTTP 401: wrong or missing API key (the profile's api_key)"
    return f"HTTP {status}"
