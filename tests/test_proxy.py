"""The PD proxy: the two-step flow against simulated servers and a recording backend, its
wire format against a real vLLM stream, its control endpoints, retries and command line."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cpconsole.core.telemetry.health import PROBE_PREFIX
from cpconsole.core.telemetry.proxy_metrics import parse_proxy_metrics
from cpconsole.proxy.app import PdProxy, ProxySettings
from cpconsole.sim.text import chat_prompt, count_tokens

from .conftest import FIXTURES
from .loopback import Block
from .simcluster import Cluster, cluster
from .sshd import free_port

REAL_STREAM = (FIXTURES / "vllm/chat-stream.sse").read_bytes()


@pytest.fixture
async def demo(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = cluster(tmp_path)
    for name in ("prefill-0", "prefill-1", "decode-0", "proxy"):
        await c.start(name)
    await c.wait_http("prefill-0")
    await c.wait_http("decode-0")
    await c.wait_http("proxy", "/healthcheck")
    yield c
    await c.stop_all()


def test_prompt_length_classes_have_their_bounds_where_they_say() -> None:
    from cpconsole.core.telemetry.proxy_metrics import prompt_class

    assert [prompt_class(n) for n in (0, 8191, 8192, 65535, 65536, 10**6, None)] == [
        "<8k",
        "<8k",
        "8k-64k",
        "8k-64k",
        ">=64k",
        ">=64k",
        "?",
    ]


async def test_the_console_shows_real_traffic_split_and_by_prompt_length(demo: Cluster) -> None:
    """What the session makes of the proxy's /metrics between two scrapes: answered and failed
    requests, TTFT with its prefill / hand-off split, and the same per prompt-length class, the
    long prompt's TTFT above the short ones'; the console's probe never counted."""
    from cpconsole.core.session import Session

    async with Session(demo.plan) as session, httpx.AsyncClient(trust_env=False, timeout=60) as client:
        poller = session.telemetry.metrics["proxy"]
        assert not (await poller.poll_once()).stale  # before any request: no histogram exists yet
        url = demo.url("proxy") + "/v1/completions"
        for words in (100, 200, 70_000):
            body = {"model": "deepseek_v3", "prompt": "word " * words, "max_tokens": 4, "stream": True}
            async with client.stream("POST", url, json=body) as answer:
                async for _ in answer.aiter_raw():
                    pass
        probe = {"model": "deepseek_v3", "prompt": "ping", "max_tokens": 1}
        await client.post(url, json=probe, headers={"X-Request-Id": PROBE_PREFIX + "x"})
        assert (await client.post(url, json={**probe, "model": "nope"})).status_code == 404  # a failure
        for _ in range(200):  # a request is counted once its last byte went out
            if served((await client.get(demo.url("proxy") + "/metrics")).text) == 3:
                break
            await asyncio.sleep(0.01)
        assert not (await poller.poll_once()).stale
        figures = session.view().servers["proxy"]
    traffic = figures.traffic
    assert traffic is not None and (traffic.answered, traffic.failed) == (3, 1)
    assert set(figures.classes) == {"<8k", ">=64k"}
    short, long = figures.classes["<8k"], figures.classes[">=64k"]
    assert (short.answered, long.answered, short.failed) == (2, 1, None)
    assert (long.ttft[0] or 0) > (short.ttft[1] or 0)  # 70k tokens take longer to prefill than 200
    assert (long.prefill[0] or 0) > (long.handoff[0] or 0) > 0  # the prefill dominates a long prompt
    assert traffic.ttft[1] == pytest.approx(long.ttft[1], rel=0.5)  # the slowest request is the long one


async def test_streamed_chat_through_the_proxy(demo: Cluster) -> None:
    body = {
        "model": "deepseek_v3",
        "messages": [{"role": "user", "content": "hello " * 300}],
        "max_tokens": 16,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        answer = await client.post(demo.url("proxy") + "/v1/chat/completions", json=body)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/event-stream; charset=utf-8"
        events = [e for e in answer.text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]" and json.loads(events[-2][6:])["usage"]["completion_tokens"] == 16
        prefill = (await client.get(demo.url("prefill-0") + "/metrics")).text
        decode = (await client.get(demo.url("decode-0") + "/metrics")).text
    # the prefiller made exactly one token; the decoder got the prompt's KV from it
    assert 'vllm:generation_tokens_total{engine="0",model_name="deepseek_v3"} 1.0' in prefill
    prompt_tokens = count_tokens(chat_prompt(body["messages"]))  # type: ignore[arg-type]
    assert f'source="external_kv_transfer"}} {prompt_tokens:.1f}' in decode and 'source="local_compute"} 0.0' in decode


def served(text: str) -> float:
    """Requests the proxy's /metrics counts as ended well."""
    families = text_string_to_metric_families(text)
    return sum(
        s.value
        for f in families
        for s in f.samples
        if s.name.endswith("requests_total") and s.labels["outcome"] == "ok"
    )


async def test_the_proxy_measures_each_request_as_its_client_does(demo: Cluster) -> None:
    """Its /metrics (read by prometheus_client's own parser): the TTFT the client waited for, split
    into prefill and hand-off that add up to it; TPOT; prompt tokens as the prefill counted them; the
    console's probes counted apart and never in the latencies."""
    body = {"model": "deepseek_v3", "prompt": "word " * 2000, "max_tokens": 8, "stream": True}
    waited = []
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        for _ in range(3):
            started = time.monotonic()
            async with client.stream("POST", demo.url("proxy") + "/v1/completions", json=body) as answer:
                first = None
                async for _chunk in answer.aiter_raw():
                    first = first or time.monotonic() - started  # the first chunk's time is the TTFT
                waited.append(first or 0.0)
        probe = {"model": "deepseek_v3", "prompt": "ping", "max_tokens": 1}
        await client.post(
            demo.url("proxy") + "/v1/completions", json=probe, headers={"X-Request-Id": PROBE_PREFIX + "x"}
        )
        for _ in range(200):  # a request is counted once its last byte went out: after the client had it
            text = (await client.get(demo.url("proxy") + "/metrics")).text
            if served(text) == 3:
                break
            await asyncio.sleep(0.01)
    found = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels.get("le")}
    prefill, decode = demo.plan.process("prefill-0"), demo.plan.process("decode-0")
    counted = [
        (s.labels, s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.endswith("requests_total")
    ]
    pair = {"prefill": f"{prefill.address}:{prefill.http_port}", "decode": f"{decode.address}:{decode.http_port}"}
    assert counted == [({**pair, "outcome": "ok"}, 3.0)]  # the probe is not one of them
    assert found["cpconsole_proxy_probes_total"] == 1.0 and found["cpconsole_proxy_ttft_seconds_count"] == 3.0
    ttft = found["cpconsole_proxy_ttft_seconds_sum"]
    split = found["cpconsole_proxy_prefill_seconds_sum"] + found["cpconsole_proxy_handoff_seconds_sum"]
    assert abs(split - ttft) < 0.003 * 3  # the two parts add up to the whole, within a few ms each
    assert ttft <= sum(waited)  # the proxy's TTFT is inside what the client waited
    assert found["cpconsole_proxy_tpot_seconds_count"] == 3.0 and found["cpconsole_proxy_e2e_seconds_count"] == 3.0
    assert found["cpconsole_proxy_prompt_tokens_sum"] == 3 * count_tokens("word " * 2000)
    # as the console reads it: the same shape as an API server's figures, real traffic only
    seen = parse_proxy_metrics(text).total
    assert seen.histograms["ttft"].count == 3 and seen.histograms["ttft"].sum == pytest.approx(ttft)
    assert seen.requests_finished == 3 and seen.histograms["handoff"].buckets[-1] == (math.inf, 3.0)
    assert (
        3 < seen.generation_tokens == found["cpconsole_proxy_output_tokens_total"] <= 3 * 8
    )  # events; MTP sends several at once


async def test_non_streamed_completion_through_the_proxy(demo: Cluster) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        answer = await client.post(demo.url("proxy") + "/v1/completions", json={"prompt": "hi", "max_tokens": 4})
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["usage"]["completion_tokens"] == 4
    assert f"Uvicorn running on {demo.url('proxy')} (Press CTRL+C to quit)" in demo.log("proxy")


async def test_control_endpoints(demo: Cluster) -> None:
    async with httpx.AsyncClient(base_url=demo.url("proxy"), trust_env=False, timeout=10) as client:
        prefill, decode = (demo.plan.process(n) for n in ("prefill-0", "decode-0"))
        assert (await client.get("/healthcheck")).json() == {
            "status": "ok",
            "prefill_instances": 1,
            "decode_instances": 1,
            "live_prefill_instances": 1,
            "live_decode_instances": 1,
            "backends": {
                "prefill": [{"instance": f"{prefill.address}:{prefill.http_port}", "state": "healthy", "active": 0}],
                "decode": [{"instance": f"{decode.address}:{decode.http_port}", "state": "healthy", "active": 0}],
            },
        }
        assert (await client.get("/v1/models")).json()["data"][0]["id"] == "deepseek_v3"
        # a profile's proxy has its instance API (cpconsole drains through it), behind the admin
        # token its launch script made in its run directory: without it, nobody changes the backends
        added = await client.post("/instances/add", json={"type": "decode", "instances": ["127.0.0.14:8004"]})
        assert added.status_code == 401 and added.json() == {"error": "wrong or missing admin token"}
        token = Path(demo.handles["proxy"].run_dir, ".admin_token")
        assert len(token.read_text()) == 48 and oct(token.stat().st_mode & 0o777) == "0o600"


Fault = Literal["", "500", "huge", "hang", "cut"]


class Recorder:
    """A real HTTP backend on loopback that records what the proxy sends and answers like vLLM —
    or fails as a real one can (`fault`, changeable while it serves): a 500 with a traceback page,
    a prefill answer of 64 MiB, no answer at all, a stream cut after its first event."""

    def __init__(self, host: str, *, kv_params: bool = True, fault: Fault = "") -> None:
        self.host, self.port = host, free_port(host)
        self.kv_params = kv_params  # as a prefill: answer with kv_transfer_params (ExampleConnector does not)
        self.fault: Fault = fault
        self.seen: list[tuple[str, dict[str, object], dict[str, str]]] = []
        self.cancelled = 0  # requests whose client (the proxy) went away while this one held them
        self.app = Starlette(
            routes=[Route("/v1/chat/completions", self.chat, methods=["POST"]), Route("/health", self.health)]
        )

    async def health(self, request: Request) -> Response:
        return Response(status_code=500) if self.fault == "500" else JSONResponse({})

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.seen.append((request.url.path, body, dict(request.headers)))
        if self.fault == "500":
            page = "<html>Traceback (most recent call last):\n  File engine.py\nEngineDeadError</html>"
            return Response(page, status_code=500, media_type="text/html")
        if self.fault == "hang":  # until its client leaves: vLLM aborts such a request (its with_cancellation)
            while (await request.receive())["type"] != "http.disconnect":
                pass
            self.cancelled += 1
            return Response(status_code=499)
        prefill = bool(body.get("kv_transfer_params", {}).get("do_remote_decode"))
        if prefill and self.fault == "huge":

            async def endless() -> AsyncIterator[bytes]:
                for _ in range(64):
                    yield b" " * (1 << 20)

            return StreamingResponse(endless(), media_type="application/json")
        if prefill:
            params = {"do_remote_prefill": True, "remote_engine_id": "7"} if self.kv_params else None
            return JSONResponse({"choices": [], "kv_transfer_params": params})

        async def replay() -> AsyncIterator[bytes]:
            for n, part in enumerate(REAL_STREAM.split(b"\n\n")):
                if n == 1 and self.fault == "cut":
                    raise ConnectionResetError("the decode died mid-answer")
                yield part + b"\n\n"

        return StreamingResponse(replay(), media_type="text/event-stream")


@pytest.fixture
def recorders() -> Iterator[tuple[Recorder, Recorder]]:
    block = Block.fresh()
    yield from serving(Recorder(block.ip(31)), Recorder(block.ip(32)))


class Served(Protocol):
    host: str
    port: int
    app: Starlette


def serving(*pair: Served) -> Iterator[Any]:  # the tuple it was given, as its caller typed it
    """The apps served by real uvicorn servers on their loopback ports, each in a thread."""
    servers = [uvicorn.Server(uvicorn.Config(r.app, host=r.host, port=r.port, log_level="error")) for r in pair]
    threads = [threading.Thread(target=s.run, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    while not all(s.started for s in servers):
        time.sleep(0.01)
    yield pair
    for server in servers:
        server.should_exit = True
    for thread in threads:
        thread.join(5)


async def test_two_step_flow_and_byte_exact_relay(recorders: tuple[Recorder, Recorder]) -> None:
    prefiller, decoder = recorders
    proxy = PdProxy([(prefiller.host, prefiller.port)], [(decoder.host, decoder.port)], ProxySettings())
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 50,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    transport = httpx.ASGITransport(app=proxy.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        answer = await client.post("/v1/chat/completions", json=body, headers={"X-Request-Id": "cpconsole-abc"})
    await proxy.clients.aclose()
    assert answer.content.rstrip(b"\n") == REAL_STREAM.rstrip(b"\n")  # relayed unchanged
    (_, sent_p, headers_p), (_, sent_d, headers_d) = prefiller.seen[0], decoder.seen[0]
    assert sent_p["max_tokens"] == 1 and sent_p["stream"] is False and "stream_options" not in sent_p
    assert sent_p["kv_transfer_params"] == {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "remote_engine_id": None,
        "remote_block_ids": None,
        "remote_host": None,
        "remote_port": None,
    }
    assert sent_d["kv_transfer_params"] == {"do_remote_prefill": True, "remote_engine_id": "7"}
    assert sent_d["max_tokens"] == 50 and sent_d["stream_options"] == {"include_usage": True}
    assert headers_p["x-request-id"] == headers_d["x-request-id"] == "cpconsole-abc"


async def test_an_unreachable_decoder_is_reported_and_taken_out_of_rotation(
    recorders: tuple[Recorder, Recorder],
) -> None:
    prefiller, _ = recorders
    dead_host = Block.fresh().ip(33)
    dead_port = free_port(dead_host)
    proxy = PdProxy([(prefiller.host, prefiller.port)], [(dead_host, dead_port)], ProxySettings(2, 0.01))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy.app), base_url="http://proxy") as client:
        answer = await client.post("/v1/chat/completions", json={"messages": [], "max_tokens": 3})
        assert answer.status_code == 502 and f"decoder {dead_host}:{dead_port} unreachable" in answer.json()["error"]
        # out of rotation now, and no other decode: refused at once, until its /health answers
        again = await client.post("/v1/chat/completions", json={"messages": [], "max_tokens": 3})
        shown = (await client.get("/healthcheck")).json()["backends"]["decode"]
    await proxy.clients.aclose()
    assert again.status_code == 503 and again.json()["error"] == "no decode instance in rotation"
    assert shown == [
        {"instance": f"{dead_host}:{dead_port}", "state": "open", "active": 0, "reason": shown[0]["reason"]}
    ]


def test_command_line_is_the_examples() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cpconsole.proxy", "--prefiller-hosts", "a", "b", "--prefiller-ports", "1"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2
    assert "Number of prefiller hosts must match number of prefiller ports" in done.stderr


async def test_least_loaded_backend_is_picked() -> None:
    proxy = PdProxy([("a", 1), ("b", 2)], [("c", 3)], ProxySettings())
    first = proxy.pools["prefill"].pick()
    assert first is not None and first.host == "a"
    first.active += 1
    second = proxy.pools["prefill"].pick()
    assert second is not None and second.host == "b"
    await asyncio.sleep(0)
    await proxy.clients.aclose()


async def test_a_prefill_answer_without_kv_params_is_refused_not_prefilled_again() -> None:
    """Forwarded, the decode would prefill the whole prompt itself (minutes at 128k, no error): a 502
    naming the prefill instead, unless the connector is known to send none (--kv-params optional)."""
    block = Block.fresh()
    for prefiller, decoder in serving(Recorder(block.ip(31), kv_params=False), Recorder(block.ip(32))):
        answers = []
        for required in (True, False):
            settings = ProxySettings(kv_params_required=required)
            proxy = PdProxy([(prefiller.host, prefiller.port)], [(decoder.host, decoder.port)], settings)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy.app), base_url="http://p") as client:
                answers.append(await client.post("/v1/chat/completions", json={"messages": [], "max_tokens": 3}))
            await proxy.clients.aclose()
        refused, forwarded = answers
        assert refused.status_code == 502 and forwarded.status_code == 200
        named = f"prefiller {prefiller.host}:{prefiller.port} answered without kv_transfer_params"
        assert refused.json()["error"].startswith(named)
        assert len(decoder.seen) == 1  # only the request let through reached the decode


async def test_client_shards_are_taken_in_turn_and_share_one_tls_context() -> None:
    """Hundreds of streams spread over the shards' pools (httpcore walks a whole pool per request)."""
    from cpconsole.core.httpclient import ClientShards

    shards = ClientShards(4, 5.0)
    picked = [shards.pick() for _ in range(8)]
    assert picked[:4] == shards.clients and picked[4:] == shards.clients and len(set(map(id, picked))) == 4
    contexts = {id(c._transport._pool._ssl_context) for c in shards.clients}  # type: ignore[attr-defined]
    assert len(contexts) == 1
    await shards.aclose()
    assert all(c.is_closed for c in shards.clients)
