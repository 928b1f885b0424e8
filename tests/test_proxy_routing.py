"""The proxy in the data path keeps requests it can keep and bounds everything else: a backend
that fails is taken out of rotation (and back once its /health answers), a request that failed
before any byte reached its client is tried on another instance of the role, a client that leaves
cancels what it started upstream, an answer is read only up to a bound, every upstream wait has a
timeout, health and metrics are served at the request limit, and errors are summarised — cpconsole's
proxy in a process of its own in front of real HTTP backends on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .loopback import Block
from .test_proxy import Recorder, serving
from .test_trust_proxy import API_KEY, chat, proxy_process


@pytest.fixture
def two_of_each() -> Iterator[tuple[Recorder, ...]]:
    block = Block.fresh()
    yield from serving(*(Recorder(block.ip(n)) for n in (51, 52, 53, 54)))


def key() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


async def backends_shown(client: httpx.AsyncClient, role: str) -> list[dict[str, object]]:
    shown: list[dict[str, object]] = (await client.get("/healthcheck")).json()["backends"][role]
    return shown


def counted(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def until(check: object, seconds: float = 30) -> None:
    """A hang guard, not a speed bound: until the awaitable-making callable answers true."""
    for _ in range(int(seconds / 0.05)):
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


async def test_a_failing_instance_is_routed_around_and_taken_back_when_healthy(
    two_of_each: tuple[Recorder, ...],
) -> None:
    p1, p2, d1, d2 = two_of_each
    p1.fault, d1.fault = "500", "cut"  # an engine that died (500 and a traceback page), a decode dying mid-answer
    async with (
        proxy_process([p1, p2], [d1, d2]) as proxy,
        httpx.AsyncClient(base_url=proxy.url, trust_env=False, timeout=30) as client,
    ):
        streamed = {**chat(), "stream": True}
        answers = [await client.post("/v1/chat/completions", json=streamed, headers=key()) for _ in range(4)]
        assert all(a.status_code == 200 for a in answers)  # the 500 never reached a client: retried on p2
        prefills = {b["instance"]: b["state"] for b in await backends_shown(client, "prefill")}
        assert prefills == {f"{p1.host}:{p1.port}": "open", f"{p2.host}:{p2.port}": "healthy"}
        # the decode that died mid-stream: that client saw an error event, never a silent replay
        cut = [a for a in answers if b'"upstream_error"' in a.content]
        assert len(cut) == 1 and cut[0].content.count(b"data: ") == 2
        metrics = (await client.get("/metrics")).text
        assert counted(metrics, "cpconsole_proxy_retries_total", stage="prefill") >= 1
        assert counted(metrics, "cpconsole_proxy_backend_state", instance=f"{p1.host}:{p1.port}", state="open") == 1
        p1.fault = ""  # it was restarted: its /health answers, and it is back in rotation

        async def back() -> bool:
            return {b["state"] for b in await backends_shown(client, "prefill")} == {"healthy"}

        await until(back)
        served = len(p1.seen)
        await client.post("/v1/chat/completions", json=chat(), headers=key())
        await client.post("/v1/chat/completions", json=chat(), headers=key())
        assert len(p1.seen) > served


async def test_a_client_that_leaves_cancels_the_prefill_and_no_decode_starts(
    two_of_each: tuple[Recorder, ...],
) -> None:
    p1, _, d1, _ = two_of_each
    p1.fault = "hang"  # a long prefill
    async with (
        proxy_process(p1, d1, "--limit-concurrency", "2") as proxy,
        httpx.AsyncClient(base_url=proxy.url, trust_env=False, timeout=30) as client,
    ):
        waiting = [
            asyncio.create_task(client.post("/v1/chat/completions", json=chat(), headers=key())) for _ in range(2)
        ]

        async def held() -> bool:
            return [b["active"] for b in await backends_shown(client, "prefill")] == [2]

        await until(held)
        # at the limit: completions are refused, health and metrics answered
        refused = await client.post("/v1/chat/completions", json=chat(), headers=key())
        assert refused.status_code == 503 and "limit" in refused.json()["error"]
        assert (await client.get("/metrics")).status_code == 200
        for task in waiting:  # both clients give up
            task.cancel()

        async def let_go() -> bool:
            return p1.cancelled == 2 and [b["active"] for b in await backends_shown(client, "prefill")] == [0]

        await until(let_go)
        assert not d1.seen  # no decode was ever asked
        assert (
            counted((await client.get("/metrics")).text, "cpconsole_proxy_requests_total", outcome="client_gone") == 2
        )


async def test_every_upstream_wait_and_answer_is_bounded(two_of_each: tuple[Recorder, ...]) -> None:
    p1, p2, d1, _ = two_of_each
    p1.fault, p2.fault = "hang", "huge"
    async with (
        proxy_process(p1, d1, "--prefill-timeout", "0.5") as proxy,
        httpx.AsyncClient(base_url=proxy.url, trust_env=False, timeout=30) as client,
    ):
        slow = await client.post("/v1/chat/completions", json=chat(), headers=key())
        assert slow.status_code == 502 and slow.json()["error"].endswith("timed out")
    async with (
        proxy_process(p2, d1) as proxy,
        httpx.AsyncClient(base_url=proxy.url, trust_env=False, timeout=30) as client,
    ):
        huge = await client.post("/v1/chat/completions", json=chat(), headers=key())
        assert huge.status_code == 502 and "answered more than 16 MiB" in huge.json()["error"]
    p2.fault = "500"
    async with (
        proxy_process(p2, d1) as proxy,
        httpx.AsyncClient(base_url=proxy.url, trust_env=False, timeout=30) as client,
    ):
        failed = await client.post("/v1/chat/completions", json=chat(), headers=key())
        said = failed.json()["error"]
        assert failed.status_code == 502 and "(HTTP 500)" in said and "Traceback" not in said  # summarised
