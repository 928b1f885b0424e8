"""The proxy cannot be steered from outside: the instance API is off by default, then loopback
or admin token only; the API key only ever reaches the backends it was started with; bad bodies
get 400/413 instead of a traceback; slow request heads and too many connections are bounded; its
health says when a role has no live backend. Against a real proxy process on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import httpx
import pytest

from cpconsole.proxy.__main__ import CONTROL_HEADROOM
from cpconsole.proxy.app import PdProxy, ProxySettings

from .loopback import Block
from .sshd import free_port
from .test_proxy import Recorder, serving

API_KEY = "sk-secret-of-the-profile"
ADMIN = "admin-token-of-the-operator"


@dataclass
class Proxy:
    url: str
    host: str
    port: int


@pytest.fixture
def backends() -> Iterator[tuple[Recorder, ...]]:
    """A prefiller, a decoder, and an attacker's listener."""
    block = Block.fresh()
    yield from serving(Recorder(block.ip(41)), Recorder(block.ip(42)), Recorder(block.ip(43)))


@contextlib.asynccontextmanager
async def proxy_process(
    prefill: Recorder | Sequence[Recorder], decode: Recorder | Sequence[Recorder] | tuple[str, int], *extra: str
) -> AsyncIterator[Proxy]:
    """cpconsole's proxy in a process of its own, in front of these backends (one or more a role)."""
    host = Block.fresh().ip(44)
    port = free_port(host)
    env = {**os.environ, "OPENAI_API_KEY": API_KEY, "CPCONSOLE_PROXY_ADMIN_TOKEN": ADMIN}
    backends = [*places("--prefiller", prefill), *places("--decoder", decode)]
    argv = [sys.executable, "-m", "cpconsole.proxy", "--host", host, "--port", str(port), *backends]
    argv += ["--log-level", "WARNING", *extra]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://{host}:{port}"
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            for _ in range(400):
                with contextlib.suppress(httpx.TransportError):
                    await client.get(url + "/healthcheck")
                    break
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                await asyncio.sleep(0.025)
        yield Proxy(url, host, port)
    finally:
        process.terminate()
        process.wait(10)


def places(flag: str, backends: Recorder | Sequence[Recorder] | tuple[str, int]) -> list[str]:
    """`--prefiller-hosts h… --prefiller-ports p…` for one backend or several."""
    if isinstance(backends, Recorder):
        pairs = [(backends.host, backends.port)]
    elif isinstance(backends, tuple) and isinstance(backends[0], str):
        pairs = [(backends[0], int(backends[1]))]
    else:
        pairs = [(b.host, b.port) for b in backends if isinstance(b, Recorder)]
    return [f"{flag}-hosts", *(h for h, _ in pairs), f"{flag}-ports", *(str(p) for _, p in pairs)]


def chat(max_tokens: int = 3) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}


async def test_instance_api_is_off_by_default_and_traffic_stays_where_the_profile_says(
    backends: tuple[Recorder, ...],
) -> None:
    prefill, decode, attacker = backends
    async with (
        proxy_process(prefill, decode) as proxy,
        httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client,
    ):
        steal = {"type": "decode", "instances": [f"{attacker.host}:{attacker.port}"]}
        assert (await client.post("/instances/add", json=steal)).status_code == 403
        drop = {"type": "decode", "instances": [f"{decode.host}:{decode.port}"]}
        assert (await client.post("/instances/remove", json=drop)).status_code == 403
        assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200
    assert attacker.seen == []
    assert decode.seen[0][2]["authorization"] == f"Bearer {API_KEY}"


async def test_instance_api_needs_the_admin_token_and_never_hands_the_key_to_an_added_backend(
    backends: tuple[Recorder, ...],
) -> None:
    prefill, decode, added = backends
    async with (
        proxy_process(prefill, decode, "--enable-instance-api") as proxy,
        httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client,
    ):
        body = {"type": "decode", "instances": [f"{added.host}:{added.port}"]}
        assert (await client.post("/instances/add", json=body)).status_code == 401  # loopback is not enough now
        wrong = {"Authorization": "Bearer guess"}
        assert (await client.post("/instances/add", json=body, headers=wrong)).status_code == 401
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert (await client.post("/instances/add", json=body, headers=admin)).status_code == 200
        original = {"type": "decode", "instances": [f"{decode.host}:{decode.port}"]}
        assert (await client.post("/instances/remove", json=original, headers=admin)).status_code == 200
        assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200
    _, _, headers = added.seen[0]
    assert "authorization" not in headers  # the key stays with the profile's backends
    assert prefill.seen[0][2]["authorization"] == f"Bearer {API_KEY}"


async def test_a_backend_the_admin_adds_as_trusted_gets_the_key(backends: tuple[Recorder, ...]) -> None:
    # cpconsole's `apply` hands the proxy an instance of the profile's own: it serves with the key
    prefill, decode, added = backends
    async with (
        proxy_process(prefill, decode, "--enable-instance-api") as proxy,
        httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client,
    ):
        admin = {"Authorization": f"Bearer {ADMIN}"}
        body = {"type": "decode", "instances": [f"{added.host}:{added.port}"], "trusted": True}
        assert (await client.post("/instances/add", json=body, headers=admin)).status_code == 200
        original = {"type": "decode", "instances": [f"{decode.host}:{decode.port}"]}
        assert (await client.post("/instances/remove", json=original, headers=admin)).status_code == 200
        assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200
    _, _, headers = added.seen[0]
    assert headers["authorization"] == f"Bearer {API_KEY}"


async def test_without_a_token_the_instance_api_answers_loopback_clients_only() -> None:
    proxy = PdProxy([("127.0.0.1", 1)], [("127.0.0.1", 2)], ProxySettings(instance_api=True))
    body = {"type": "decode", "instances": ["127.0.0.45:9"]}
    for client_address, status in ((("198.51.100.7", 40000), 403), (("127.0.0.1", 40000), 200)):
        # in-process ASGI: the client address is what the server would see; nothing is dialled
        transport = httpx.ASGITransport(app=proxy.app, client=client_address)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            assert (await client.post("/instances/add", json=body)).status_code == status
    await proxy.clients.aclose()


async def test_bad_bodies_are_refused_with_a_message(backends: tuple[Recorder, ...]) -> None:
    prefill, decode, _ = backends
    async with (
        proxy_process(prefill, decode, "--max-body-bytes", "4096") as proxy,
        httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client,
    ):
        for content in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"[" * 100_0 + b"]" * 100_0):
            answer = await client.post("/v1/completions", content=content)
            assert answer.status_code in (400, 413), (content[:20], answer.status_code)
            assert answer.json()["error"]
        big = {"prompt": "x" * 5000, "max_tokens": 1}
        answer = await client.post("/v1/completions", json=big)
        assert answer.status_code == 413 and "over the limit of 4096" in answer.json()["error"]

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
            for _ in range(10):
                yield b" " * 1000

        answer = await client.post("/v1/completions", content=chunked())
        assert answer.status_code == 413
        assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200  # still serving
    assert prefill.seen and len(prefill.seen) == 1  # nothing bad was forwarded


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


async def test_a_slow_request_head_is_cut_off_and_connections_are_bounded(backends: tuple[Recorder, ...]) -> None:
    prefill, decode, _ = backends
    async with proxy_process(prefill, decode, "--header-timeout", "0.5", "--limit-concurrency", "3") as proxy:
        slow = socket.create_connection((proxy.host, proxy.port))
        slow.settimeout(30)  # a guard against a hang only: the proxy closes it long before
        slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: proxy\r\n")  # and never the rest
        assert await asyncio.to_thread(read_until_closed, slow) == b""
        slow.close()

        # the connections themselves are bounded: past the limit and the room kept for health and metrics
        idle = [socket.create_connection((proxy.host, proxy.port)) for _ in range(3 + CONTROL_HEADROOM)]
        async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client:
            answer = await client.get("/healthcheck")
            assert (answer.status_code, answer.text) == (503, "Service Unavailable")  # uvicorn's limit, not ours
            for sock in idle:
                sock.close()
            for _ in range(400):  # the server notices the closed connections, then serves again
                if (await client.get("/healthcheck")).status_code == 200:
                    break
                await asyncio.sleep(0.025)
            else:
                raise AssertionError("never served again")


HEALTH_REQUEST = b"GET /healthcheck HTTP/1.1\r\nHost: proxy\r\n\r\n"


def read_response(sock: socket.socket) -> bytes:
    """One whole response to HEALTH_REQUEST (its body is a small JSON object), or what came before EOF."""
    data = b""
    while not (b"\r\n\r\n" in data and data.endswith(b"}")):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


async def test_a_kept_alive_connection_outlives_the_head_timeout_and_its_next_head_is_timed(
    backends: tuple[Recorder, ...],
) -> None:
    # A proxy that closes idle connections as early as clients let go of theirs resets the request a
    # client sends at that moment (seen in the real-vLLM tier: ReadError on one request of 80). Idle,
    # a connection is kept for the keep-alive timeout; the head timeout starts at the next first byte.
    prefill, decode, _ = backends
    async with proxy_process(prefill, decode, "--header-timeout", "0.3") as proxy:
        kept = socket.create_connection((proxy.host, proxy.port))
        kept.settimeout(30)  # guards against a hang only
        kept.sendall(HEALTH_REQUEST)
        assert (await asyncio.to_thread(read_response, kept)).startswith(b"HTTP/1.1 200")
        witness = socket.create_connection((proxy.host, proxy.port))  # opened as `kept` went idle
        witness.settimeout(30)
        assert await asyncio.to_thread(read_until_closed, witness) == b""  # its head timeout has passed
        witness.close()
        kept.sendall(HEALTH_REQUEST)  # on the connection idle for longer than that
        assert (await asyncio.to_thread(read_response, kept)).startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /healthcheck HTTP/1.1\r\n")  # the next head begins and never ends
        assert await asyncio.to_thread(read_until_closed, kept) == b""
        kept.close()


async def test_health_is_degraded_while_a_role_has_no_live_backend(backends: tuple[Recorder, ...]) -> None:
    prefill, _, _ = backends
    dead_host = Block.fresh().ip(46)
    dead = (dead_host, free_port(dead_host))
    async with proxy_process(prefill, dead) as proxy, httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client:
        answer = await client.get("/healthcheck")
    assert answer.status_code == 503
    counts = {"prefill_instances": 1, "decode_instances": 1, "live_prefill_instances": 1, "live_decode_instances": 0}
    shown = answer.json()
    assert shown.pop("backends")["decode"][0]["instance"] == f"{dead_host}:{dead[1]}"
    assert shown == {"status": "degraded", **counts}
