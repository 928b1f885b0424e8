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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from cpconsole.core.orchestrate.drain import Backend, ProxyAdmin
from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.profile import load_profile

from .conftest import PROFILES, write_profile
from .simcluster import demo_text, one_p_two_d, processes_under

T = TypeVar("T")


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


async def under_traffic(plan: LaunchPlan, change: Callable[[], Awaitable[T]]) -> tuple[Traffic, float, T]:
    """Steady traffic (40 requests in), the change, then 40 more requests: the traffic, when the change
    began (monotonic) and what it returned."""
    traffic = Traffic(plan.process("proxy").base_url, plan.model_name)
    running = asyncio.create_task(traffic.run())
    try:
        await traffic.more(40)
        began = time.monotonic()
        done = await change()
        await traffic.more(40)
    finally:
        traffic.stop.set()
        await running
    return traffic, began, done


async def test_restarting_one_of_two_decodes_fails_no_request(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, plan = deployment
    traffic, _, (code, out, err) = await under_traffic(plan, lambda: cpconsole("restart", str(profile), "decode2"))
    assert code == 0 and "draining" in err, out + err  # out of rotation first
    assert traffic.failed() == 0, f"{traffic.failed()} of {len(traffic.results)} requests failed"
    log = Path(plan.node("decode-b").run_dir, plan.run_key, "decode2-0", "log").read_text()
    assert log.count('"POST /v1/completions HTTP/1.1" 200') > 0  # the restarted decode took requests again


async def test_stopping_one_of_two_decodes_fails_no_request(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, plan = deployment
    traffic, _, (code, out, err) = await under_traffic(plan, lambda: cpconsole("down", str(profile), "-p", "decode2-0"))
    assert code == 0 and "draining" in err, out + err
    assert traffic.failed() == 0, f"{traffic.failed()} of {len(traffic.results)} requests failed"


async def kill_server(profile: Path, process: str) -> float:
    """SIGKILL of the simulated server under a process's wrapper; when (monotonic)."""
    status = json.loads((await cpconsole("status", str(profile), "--json"))[1])
    wrapper = next(p["pid"] for p in status["processes"] if p["name"] == process)
    for child in processes_under(wrapper, "cpconsole.sim"):
        os.kill(child.pid, signal.SIGKILL)
    return time.monotonic()


async def test_a_killed_decode_is_routed_around(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, plan = deployment
    traffic, _, killed = await under_traffic(plan, lambda: kill_server(profile, "decode2-0"))
    assert traffic.failed() <= traffic.clients  # only streams the dead decode held (at most every client's)
    assert traffic.failed(after=killed + 1.0) == 0  # every request started a second later succeeded


def test_one_instance_of_a_role_is_said_to_interrupt_before_a_restart(tmp_path: Path) -> None:
    import subprocess

    profile = write_profile(tmp_path, one_p_two_d(demo_text(tmp_path)))
    done = subprocess.run(
        [sys.executable, "-m", "cpconsole", "restart", str(profile), "prefill"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "prefill is the only prefill instance: requests fail while it restarts; add --allow-downtime" in done.stderr


def without_decode2(text: str) -> str:
    """The 1P2D profile with its second decode instance removed (its node stays: a spare)."""
    start = text.index("\n  decode2:\n")
    return text[:start] + text[text.index("\nproxy:", start) :]


async def test_scale_out_change_a_flag_and_scale_in_by_apply_fail_no_request(tmp_path: Path) -> None:
    # a deployment is its name and nodes: decode-b is in the profile from the start, as a spare
    full = one_p_two_d(demo_text(tmp_path))
    profile = write_profile(tmp_path, without_decode2(full))
    code, out, err = await cpconsole("up", str(profile))
    try:
        assert code == 0, out + err
        profile.write_text(full)  # scale out: decode2 on the spare node
        plan = build_plan(load_profile(profile))
        code, out, _ = await cpconsole("status", str(profile), "--json")  # half applied, and said so
        assert (code, json.loads(out)["pending"]) == (4, ["start decode2: new in the profile"])
        code, out, _ = await cpconsole("apply", str(profile), "--dry-run")
        decode2 = plan.process("decode2-0")
        assert code == 0 and out.splitlines() == [
            "  1. start decode2: new in the profile",
            f"  2. route decode {decode2.address}:{decode2.http_port}: new in the profile",
        ]
        traffic, _, (code, out, err) = await under_traffic(plan, lambda: cpconsole("apply", str(profile), "--yes"))
        assert code == 0, out + err
        assert traffic.failed() == 0, f"{traffic.failed()} of {len(traffic.results)} requests failed"
        health = httpx.get(plan.process("proxy").base_url + "/healthcheck", timeout=10).json()
        assert len(health["backends"]["decode"]) == 2  # learnt at run time: the proxy was not restarted
        code, out, _ = await cpconsole("status", str(profile), "--json")
        report = json.loads(out)
        assert code == 0 and not any(p["drift"] for p in report["processes"])  # its backends are no drift
        assert report["pending"] == []

        # a flag of decode2 changed: restarted, drained first (decode serves meanwhile)
        profile.write_text(
            full.replace("max_num_seqs: 4", "max_num_seqs: 8").replace("max_num_seqs: 8", "max_num_seqs: 4", 1)
        )
        code, out, _ = await cpconsole("apply", str(profile), "--dry-run")
        assert code == 0 and out.splitlines() == ["  1. restart decode2: decode2-0 --max-num-seqs 4 → 8"], out
        traffic, _, (code, out, err) = await under_traffic(plan, lambda: cpconsole("apply", str(profile), "--yes"))
        assert code == 0 and "draining" in err, out + err
        assert traffic.failed() == 0, f"{traffic.failed()} of {len(traffic.results)} requests failed"

        # scale in: decode2 out of the proxy's rotation, then stopped
        profile.write_text(without_decode2(full))
        traffic, _, (code, out, err) = await under_traffic(plan, lambda: cpconsole("apply", str(profile), "--yes"))
        assert code == 0, out + err
        assert "unroute decode" in out and "stop decode2-0: removed from the profile" in out
        assert traffic.failed() == 0, f"{traffic.failed()} of {len(traffic.results)} requests failed"
        code, out, _ = await cpconsole("apply", str(profile), "--dry-run")
        assert (code, out) == (0, "nothing to change: what runs is what the profile says\n")
    finally:
        await cpconsole("down", str(profile))


def test_drift_is_told_flag_by_flag() -> None:
    from cpconsole.core.orchestrate.drift import argv_changes, without_backends

    old = ["vllm", "serve", "/m", "--max-num-seqs", "4", "--seed", "1024", "--enforce-eager"]
    new = ["vllm", "serve", "/n", "--max-num-seqs", "8", "--enforce-eager", "--no-enable-prefix-caching"]
    assert argv_changes(old, new) == [
        "- /m",
        "+ /n",
        "--max-num-seqs 4 → 8",
        "+ --no-enable-prefix-caching",
        "- --seed 1024",
    ]
    assert argv_changes(["p", "--a", "1", "--b"], ["p", "--b", "--a", "1"]) == []  # the same, in another order
    proxy = [
        "python",
        "--port",
        "8005",
        "--decoder-hosts",
        "h1",
        "h2",
        "--decoder-ports",
        "1",
        "2",
        "--max-retries",
        "3",
    ]
    assert without_backends(proxy) == ["python", "--port", "8005", "--max-retries", "3"]


EXAMPLE = Path(__file__).with_name("example_proxy_standin.py")


def with_example_proxy(text: str) -> str:
    """The demo's proxy made the guide's example proxy (its stand-in: tests/example_proxy_standin.py)."""
    return text.replace("  command: [python3, -m, cpconsole.proxy]\n", f"  command: [{sys.executable}, {EXAMPLE}]\n", 1)


async def test_behind_the_guides_example_proxy_apply_routes_through_its_instance_api(tmp_path: Path) -> None:
    """What the example proxy's /instances API allows: apply reads its backends (an add of nothing
    lists them), hands it a new decode, takes a removed one out of rotation before stopping it, and
    a restart takes the instance out and puts it back — under traffic, no request fails."""
    full = with_example_proxy(one_p_two_d(demo_text(tmp_path)))
    profile = write_profile(tmp_path, without_decode2(full))
    code, out, err = await cpconsole("up", str(profile))
    try:
        assert code == 0, out + err
        profile.write_text(full)
        plan = build_plan(load_profile(profile))
        decode2 = plan.process("decode2-0")
        code, out, _ = await cpconsole("apply", str(profile), "--dry-run")
        assert code == 0 and f"route decode {decode2.address}:{decode2.http_port}" in out, out
        traffic, _, (code, out, err) = await under_traffic(plan, lambda: cpconsole("apply", str(profile), "--yes"))
        assert code == 0, out + err
        assert traffic.failed() == 0, f"{traffic.failed()} of {len(traffic.results)} requests failed"
        listed = httpx.post(
            plan.process("proxy").base_url + "/instances/add", json={"type": "decode", "instances": []}, timeout=10
        ).json()
        assert f"{decode2.address}:{decode2.http_port}" in listed["current_decode_instances"]

        traffic, _, (code, out, err) = await under_traffic(plan, lambda: cpconsole("restart", str(profile), "decode2"))
        assert code == 0 and "out of the example proxy's rotation" in err, out + err
        assert traffic.failed() == 0, f"{traffic.failed()} of {len(traffic.results)} requests failed"

        profile.write_text(without_decode2(full))
        code, out, err = await cpconsole("apply", str(profile), "--yes")
        assert code == 0 and "unroute decode" in out and "stop decode2-0" in out, out + err
        code, out, _ = await cpconsole("apply", str(profile), "--dry-run")
        assert (code, out) == (0, "nothing to change: what runs is what the profile says\n")
    finally:
        await cpconsole("down", str(profile))


async def test_an_address_the_example_proxy_lists_steers_no_connection() -> None:
    """Its list is the proxy's word, not the profile's: only servers on the deployment's nodes are
    asked whether they are idle."""
    plan = build_plan(load_profile(PROFILES / "demo.yaml"))
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, text='vllm:num_requests_running{engine="0",model_name="m"} 0.0\n')

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        admin = ProxyAdmin(plan, {}, http)
        assert await admin._idle(Backend("decode", "203.0.113.9:80"))
        assert asked == []
        assert await admin._idle(Backend("decode", "127.0.0.13:8004"))
        assert asked == ["http://127.0.0.13:8004/metrics"]
