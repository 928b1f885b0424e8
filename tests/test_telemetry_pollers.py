"""Pollers against the simulator: a source that hangs, answers garbage or takes forever turns
stale within its timeout, keeps its last good sample, and never holds up the others."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport, Transport
from cpconsole.core.telemetry.hub import Telemetry
from cpconsole.core.telemetry.pollers import Poller
from cpconsole.core.telemetry.vllm_metrics import parse_metrics

from .conftest import FIXTURES
from .loopback import Block
from .simcluster import Cluster, demo_text
from .sshd import free_port


def plan_with(tmp: Path, decode_env: dict[str, str], node_env: dict[str, str] | None = None) -> LaunchPlan:
    block = Block.fresh()
    text = demo_text(tmp, block=block)
    lines = "".join(f'      {k}: "{v}"\n' for k, v in decode_env.items())
    text = text.replace(
        "    data_parallel: {size: 1, rpc_port: 5980}\n",
        f"    data_parallel: {{size: 1, rpc_port: 5980}}\n    env:\n{lines}",
    )
    for key, value in (node_env or {}).items():
        text = text.replace(
            f"env: {{CPCONSOLE_SIM_NODE: {block.ip(12)},",
            f"env: {{{key}: '{value}', CPCONSOLE_SIM_NODE: {block.ip(12)},",
        )
    return build_plan(load_profile_text(text))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(5.0)) as client:
        yield client


async def test_poller_keeps_the_last_good_value_and_marks_it_stale() -> None:
    answers: list[object] = [1.0, TimeoutError(), ValueError("garbage"), 4.0]

    async def fetch() -> float:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            if isinstance(answer, TimeoutError):
                await asyncio.sleep(10)
            raise answer
        return float(answer)  # type: ignore[arg-type]

    poller: Poller[float] = Poller("x", fetch, interval=0.01, timeout=0.2)
    first = await poller.poll_once()
    assert (first.value, first.error) == (1.0, None)
    started = time.monotonic()
    hung = await poller.poll_once()
    assert time.monotonic() - started < 5  # the 0.2 s timeout ended it, not the 10 s fetch
    assert (hung.value, hung.error, hung.stale) == (1.0, "no answer within 0.2 s", True)
    assert hung.ok_at == first.ok_at and hung.age() is not None
    bad = await poller.poll_once()
    assert (bad.value, bad.error) == (1.0, "garbage")
    good = await poller.poll_once()
    assert (good.value, good.error, good.stale) == (4.0, None, False)


async def test_failing_sources_go_stale_while_the_others_keep_updating(tmp_path: Path, http: httpx.AsyncClient) -> None:
    plan = plan_with(tmp_path, {"CPCONSOLE_SIM_METRICS_DELAY_S": "30"}, {"CPCONSOLE_SIM_NPU_SMI_DELAY_S": "30"})
    cluster = Cluster(plan)
    transports: dict[str, Transport] = {n.name: LocalTransport(n.name) for n in plan.nodes}
    telemetry = Telemetry(
        plan,
        transports,
        http,
        npu_interval=0.3,
        npu_timeout=1.5,
        metrics_interval=0.3,
        health_interval=0.3,
        http_timeout=1.0,
    )
    try:
        for name in ("prefill-0", "prefill-1", "decode-0"):
            await cluster.start(name)
        await cluster.wait_http("prefill-0")
        await cluster.wait_http("decode-0")
        telemetry.start_nodes()
        await telemetry.sync(["prefill-0", "prefill-1", "decode-0"])
        await asyncio.sleep(3.0)
        npu = {name: p.latest for name, p in telemetry.npu.items()}
        assert npu["prefill-b"].error == "no answer within 1.5 s" and npu["prefill-b"].value is None
        assert npu["prefill-a"].error is None and npu["prefill-a"].value is not None
        assert len(npu["decode-a"].value.chips) == 16  # type: ignore[union-attr]
        assert all(c.hbm_used_mb and c.hbm_used_mb > 60000 for c in npu["decode-a"].value.chips)  # type: ignore[union-attr]
        metrics = {name: p.latest for name, p in telemetry.metrics.items()}
        assert metrics["decode-0"].error == "no answer within 1 s"
        assert metrics["prefill-0"].error is None and metrics["prefill-0"].value is not None
        assert telemetry.health["decode-0"].latest.error is None  # /health of the same server still answers
        assert telemetry.windows["prefill-0"].span > 0
        await telemetry.sync(["prefill-0"])
        assert not telemetry.metrics["decode-0"].running and telemetry.metrics["prefill-0"].running
    finally:
        await telemetry.stop()
        await cluster.stop_all()


async def test_garbage_metrics_are_an_error_not_an_exception(tmp_path: Path, http: httpx.AsyncClient) -> None:
    plan = plan_with(tmp_path, {"CPCONSOLE_SIM_METRICS_GARBAGE": "1"})
    cluster = Cluster(plan)
    telemetry = Telemetry(plan, {n.name: LocalTransport(n.name) for n in plan.nodes}, http)
    try:
        await cluster.start("decode-0")
        await cluster.wait_http("decode-0")
        result = await telemetry.metrics["decode-0"].poll_once()
        assert result.value is None and result.error is not None and "line 1" in result.error
    finally:
        await cluster.stop_all()


async def test_a_kept_alive_connection_the_server_closed_is_tried_once_more() -> None:
    """A server that answers one request per connection and drops the next one unanswered (its
    keep-alive ran out as the client reused the connection): the poll still succeeds."""
    metrics = (FIXTURES / "vllm" / "metrics.txt").read_bytes()
    answered = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(metrics))
        writer.write(metrics)
        await writer.drain()
        answered += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")  # the next request on this connection: dropped
        writer.close()

    host = Block.fresh().ip(47)
    server = await asyncio.start_server(serve, host, free_port(host))
    port = server.sockets[0].getsockname()[1]
    plan = build_plan(load_profile_text(demo_text(Path("/nonexistent"))))
    proc = plan.process("decode-0").model_copy(update={"address": host, "http_port": port})
    async with server, httpx.AsyncClient(trust_env=False, timeout=5) as client:
        telemetry = Telemetry(plan, {n.name: LocalTransport(n.name) for n in plan.nodes}, client)
        poller = Poller("metrics@test", telemetry._metrics_fetch(proc, parse_metrics), interval=1, timeout=5)
        results = [await poller.poll_once() for _ in range(3)]
    assert [r.error for r in results] == [None, None, None]
    assert answered == 3  # each poll after the first found its connection dropped, and retried
