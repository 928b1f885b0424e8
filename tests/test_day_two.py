"""Day two on a simulated 1P2D (one prefill, two decode instances, cpconsole's proxy) under steady
streaming traffic: restarting one decode fails no request (drained first, put back after), a
killed decode is routed around, and a layout with one instance of a role says before a restart
that the service will be interrupted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.profile import load_profile

from .conftest import write_profile
from .simcluster import demo_text, one_p_two_d


@dataclass
class Traffic:
    """Streaming clients through the proxy, each request judged whole: 200, an ended stream, no
    error event. Bounded in count and time whatever happens."""

    url: str
    model: str
    clients: int = 8
    most: int = 3000
    seconds: float = 240.0
    results: list[tuple[float, bool]] = field(default_factory=list)  # (started, ok)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        async with httpx.AsyncClient(trust_env=False, timeout=60) as client:

            async def one() -> None:
                body = {"model": self.model, "prompt": "day two", "max_tokens": 8, "stream": True}
                while not self.stop.is_set() and len(self.results) < self.most and time.monotonic() < deadline:
                    started, ok = time.monotonic(), False
                    try:
                        async with client.stream("POST", self.url + "/v1/completions", json=body) as answer:
                            data = b"".join([chunk async for chunk in answer.aiter_bytes()])
                        ok = answer.status_code == 200 and b"[DONE]" in data and b"upstream_error" not in data
                    except httpx.HTTPError:
                        pass
                    self.results.append((started, ok))

            await asyncio.gather(*(one() for _ in range(self.clients)))

    def failed(self, after: float = 0.0) -> int:
        return sum(not ok for started, ok in self.results if started >= after)

    async def more(self, count: int) -> None:
        """Until `count` more requests have ended (a hang guard bounds it)."""
        target = len(self.results) + count
        for _ in range(1200):
            if len(self.results) >= target:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"traffic stalled at {len(self.results)} requests")


async def cpconsole(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cpconsole", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    return process.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[tuple[Path, LaunchPlan]]:
    profile = write_profile(tmp_path, one_p_two_d(demo_text(tmp_path)))
    code, out, err = await cpconsole("up", str(profile))
    try:
        assert code == 0, out + err
        yield profile, build_plan(load_profile(profile))
    finally:
        await cpconsole("down", str(profile))


async def test_restarting_one_of_two_decodes_fails_no_request(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, plan = deployment
    traffic = Traffic(plan.process("proxy").base_url, plan.model_name)
    running = asyncio.create_task(traffic.run())
    try:
        await traffic.more(40)  # steady state
        code, out, err = await cpconsole("restart", str(profile), "decode2")
        assert code == 0, out + err
        assert "draining" in err  # out of rotation first
        after = len(traffic.results)
        await traffic.more(40)  # and both serve again afterwards
    finally:
        traffic.stop.set()
        await running
    assert traffic.failed() == 0, f"{traffic.failed()} of {len(traffic.results)} requests failed"
    log = Path(plan.node("decode-b").run_dir, plan.run_key, "decode2-0", "log").read_text()
    served = log.count('"POST /v1/completions HTTP/1.1" 200')
    assert served > 0 and len(traffic.results) > after  # the restarted decode took requests again


async def test_stopping_one_of_two_decodes_fails_no_request(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, plan = deployment
    traffic = Traffic(plan.process("proxy").base_url, plan.model_name)
    running = asyncio.create_task(traffic.run())
    try:
        await traffic.more(40)
        code, out, err = await cpconsole("down", str(profile), "-p", "decode2-0")
        assert code == 0 and "draining" in err, out + err
        await traffic.more(40)  # the other decode serves on alone
    finally:
        traffic.stop.set()
        await running
    assert traffic.failed() == 0, f"{traffic.failed()} of {len(traffic.results)} requests failed"


async def test_a_killed_decode_is_routed_around(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, plan = deployment
    traffic = Traffic(plan.process("proxy").base_url, plan.model_name)
    running = asyncio.create_task(traffic.run())
    try:
        await traffic.more(40)
        status = json.loads((await cpconsole("status", str(profile), "--json"))[1])
        wrapper = next(p["pid"] for p in status["processes"] if p["name"] == "decode2-0")
        servers = [
            c for c in psutil.Process(wrapper).children(recursive=True) if "cpconsole.sim" in " ".join(c.cmdline())
        ]
        in_flight_at_kill = 8  # at most every client's request was on it
        for server in servers:
            os.kill(server.pid, signal.SIGKILL)
        killed = time.monotonic()
        await traffic.more(80)
    finally:
        traffic.stop.set()
        await running
    assert traffic.failed() <= in_flight_at_kill  # only streams the dead decode held
    assert traffic.failed(after=killed + 1.0) == 0  # every request started a second later succeeded


def test_one_instance_of_a_role_is_said_to_interrupt_before_a_restart(tmp_path: Path) -> None:
    import subprocess

    profile = write_profile(tmp_path, one_p_two_d(demo_text(tmp_path)))
    done = subprocess.run(
        [sys.executable, "-m", "cpconsole", "restart", str(profile), "prefill"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "prefill is the only prefill instance: requests fail while it restarts; add --allow-downtime" in done.stderr
