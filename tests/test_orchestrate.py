"""The operator's loop on the demo topology: up in order until ready, status, failures with
their causes, stalls, kill -9, down, adoption after the console dies, drift, port conflicts —
over the local transport and over the real sshd."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from cpconsole.core.diagnosis import classify
from cpconsole.core.diagnosis.explain import zmq_hint
from cpconsole.core.orchestrate import Orchestrator, StageChanged, StateChanged, stages
from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport, SSHTransport, Transport

from .simcluster import demo_text, over_ssh, processes_under
from .sshd import Sshd


def plan_for(tmp: Path, **kwargs: object) -> LaunchPlan:
    return build_plan(load_profile_text(demo_text(tmp, **kwargs)))  # type: ignore[arg-type]


def local_transports(plan: LaunchPlan) -> dict[str, Transport]:
    return {n.name: LocalTransport(n.name) for n in plan.nodes}


@pytest.fixture
async def orch(tmp_path: Path) -> AsyncIterator[Orchestrator]:
    plan = plan_for(tmp_path)
    o = Orchestrator(plan, local_transports(plan))
    yield o
    await o.down()
    await o.close()


def pids_of(o: Orchestrator) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter()
        if any(h.run_dir in " ".join(_cmd(p)) or p.pid == h.pid for h in o.handles.values())
    ]


def _cmd(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def test_stages_are_the_instances_then_the_proxy(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    assert [(s.name, s.start, s.gate) for s in stages(plan)] == [
        ("prefill", ("prefill-0", "prefill-1"), ("prefill-0",)),
        ("decode", ("decode-0",), ("decode-0",)),
        ("proxy", ("proxy",), ("proxy",)),
    ]


async def test_up_reaches_ready_in_stages_then_down_leaves_nothing(orch: Orchestrator) -> None:
    queue = orch.events.subscribe()
    assert await orch.up()
    assert {v.state for v in orch.views.values()} == {"ready"}
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    stages_seen = [(e.stage, e.status) for e in events if isinstance(e, StageChanged)]
    # the instances load side by side (both start before either passes), the proxy after both
    assert set(stages_seen[:2]) == {("prefill", "started"), ("decode", "started")}
    assert set(stages_seen[2:4]) == {("prefill", "passed"), ("decode", "passed")}
    assert stages_seen[4:] == [("proxy", "started"), ("proxy", "passed"), ("probe", "passed")]
    started = [e.process for e in events if isinstance(e, StateChanged) and e.view.state == "starting"]
    assert started.index("prefill-0") < started.index("prefill-1") and started[-1] == "proxy"  # master first
    assert "loading weights 100%" in {e.text for e in events if hasattr(e, "text")}
    wrappers = [h.pid for h in orch.handles.values()]
    family = {c.pid for pid in wrappers for c in psutil.Process(pid).children(recursive=True)} | set(wrappers)
    assert await orch.down()  # it returns once nothing of the groups is left: no waiting here
    alive = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert {v.label for v in orch.views.values()} == {"stopped"}
    # another console (or `status`) afterwards: an operator's stop stays a stop, never a failure
    # (the master logs that it lost its ranks; that is no cause when the stop was asked for)
    later = Orchestrator(orch.plan, orch.transports)
    await later.adopt()
    assert {(v.state, v.cause) for v in later.views.values()} == {("stopped", None)}
    assert all(v.reason.startswith(f"stopped by {later.operator} at ") for v in later.views.values())
    await later.close()


async def watched_until(orch: Orchestrator, name: str, state: str, *, within: float, interval: float) -> None:
    """Run the orchestrator's watcher (as the console does) until `name` is in `state`."""
    watcher = asyncio.create_task(orch.watch(interval=interval))
    try:
        started = time.monotonic()
        while orch.views[name].state != state:
            assert time.monotonic() - started < within, orch.views[name]
            await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def test_kill_9_is_seen_by_the_watcher_with_its_last_lines(orch: Orchestrator) -> None:
    assert await orch.up()
    (server,) = processes_under(orch.handles["decode-0"].pid, "cpconsole.sim")
    server.send_signal(signal.SIGKILL)
    await watched_until(orch, "decode-0", "exited", within=30, interval=0.5)  # a hang guard, not a speed bound
    view = orch.views["decode-0"]
    assert view.label == "exited(-9)" and view.last_line
    assert orch.stores["decode-0"].last(5)


async def test_oom_at_startup_fails_with_cause_and_hint(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, extra_env={"CPCONSOLE_SIM_FAULT": "npu_oom@start-up"})
    o = Orchestrator(plan, local_transports(plan))
    try:
        assert not await o.up()
        # every rank dies of it; the stage gives up at the first one seen dead, which may be the
        # headless rank a moment before its master: the watcher then sees the master's end too
        await watched_until(o, "prefill-0", "failed", within=30, interval=0.05)
        view = o.views["prefill-0"]
        assert view.state == "failed" and view.cause is not None
        assert view.cause.kind == "npu_oom" and "gpu_memory_utilization" in view.cause.hint
        assert "NPU out of memory" in view.cause.evidence
        assert o.views["proxy"].state == "planned"  # what depends on the failed instances never started
    finally:
        await o.down()
        await o.close()


async def test_an_instance_dying_while_the_proxy_starts_fails_up_at_once(orch: Orchestrator) -> None:
    """Its health would answer 503 (no live prefill) until the proxy's timeout: the stage watches
    what the proxy routes to and gives up as soon as that is gone."""
    instances = ["prefill-0", "prefill-1", "decode-0"]
    assert await orch.up(instances)
    for name in ("prefill-0", "prefill-1"):  # the prefill instance dies (its views still say ready)
        os.killpg(orch.handles[name].pid, signal.SIGKILL)
    queue = orch.events.subscribe()
    assert not await orch.up(["proxy"])
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    failed = [e.detail for e in events if isinstance(e, StageChanged) and e.status == "failed"]
    assert failed == ["prefill-0, prefill-1, which it needs, not running"]


async def test_headless_without_its_master_stalls(orch: Orchestrator) -> None:
    assert not await orch.up(["prefill-1"])
    view = orch.views["prefill-1"]
    assert view.state == "stalled"
    master = orch.plan.node("prefill-a").address
    assert view.reason == f"waiting for the master {master}:7001: is node-rank 0 running?"


async def test_port_conflict_is_a_clear_failure_at_start(orch: Orchestrator) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((orch.plan.process("decode-0").address, 8004))
        squatter.listen()
        assert await orch.up(["decode-0"]) is False
    view = orch.views["decode-0"]
    assert view.state == "failed" and view.cause is not None and view.cause.kind == "port_in_use"


def cpconsole(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cpconsole", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_console_death_changes_nothing_and_status_adopts(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    try:
        assert cpconsole("up", profile).returncode == 0
        follower = subprocess.Popen(
            [sys.executable, "-m", "cpconsole", "logs", str(profile), "-f"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        follower.send_signal(signal.SIGKILL)  # the console dies while serving
        follower.wait()
        done = cpconsole("status", profile, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        views = {v["name"]: v for v in report["processes"]}
        assert report["alerts"] == []  # nothing wrong: the simulated chips are healthy, nothing waits
        assert {v["state"] for v in views.values()} == {"ready"}
        assert views["prefill-1"]["pid"] and views["decode-0"]["health_ms"] is not None
        # one flag changes in the profile: that process (and only that one) has drifted
        profile.write_text(profile.read_text().replace("max_num_seqs: 4", "max_num_seqs: 8"))
        views = {v["name"]: v for v in json.loads(cpconsole("status", profile, "--json").stdout)["processes"]}
        assert views["decode-0"]["state"] == "drifted"
        assert views["decode-0"]["drift"] == ["--max-num-seqs 4 → 8"]
        assert views["prefill-0"]["state"] in ("ready", "drifted")
        table = cpconsole("status", profile).stdout
        assert "decode-0 drifted from the profile:" in table
    finally:
        down = cpconsole("down", profile)
    assert down.returncode == 0, down.stdout + down.stderr


def test_restart_covers_the_whole_instance(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    try:
        assert cpconsole("up", profile).returncode == 0
        before = {v["name"]: v["pid"] for v in json.loads(cpconsole("status", profile, "--json").stdout)["processes"]}
        done = cpconsole("restart", profile, "prefill-1", "--json", "--allow-downtime")
        assert done.returncode == 0, done.stdout + done.stderr
        after = {v["name"]: v["pid"] for v in json.loads(done.stdout)["processes"]}
        assert after["prefill-0"] != before["prefill-0"] and after["prefill-1"] != before["prefill-1"]
        assert after["decode-0"] == before["decode-0"] and after["proxy"] == before["proxy"]
        # told as it happens: only what the restart changes, not what adoption found running
        told = cpconsole("restart", profile, "prefill-1", "--allow-downtime")
        assert told.returncode == 0, told.stderr
        named = {words[1] for line in told.stderr.splitlines() if len(words := line.split()) > 2}
        assert named == {"prefill-0", "prefill-1", "--"}, told.stderr
    finally:
        cpconsole("down", profile)


def test_causes_from_real_log_lines() -> None:
    cases = {
        "kv_cache_too_small": "ValueError: To serve at least one request with the models's max seq len (136000), (8.87 GiB KV "
        "cache is needed, which is larger than the available KV cache memory (2.00 GiB). Based on the available "
        "memory, the estimated maximum model length is 30672.",
        "hccl_link_timeout": "RuntimeError: Communication_Error_Get_Socket(EI0006): Getting socket times out.",
        "zmq_port": "zmq.error.ZMQError: Address already in use (addr='tcp://192.0.0.1:30003')",
        "engine_start": "(EngineCore_DP0 pid=7) ERROR 01-21 02:34:16 [core.py:866] EngineCore failed to start.",
    }
    for kind, line in cases.items():
        cause = classify(["INFO something", line, "INFO after"])
        assert cause is not None and cause.kind == kind, line
    assert classify(["all good"]) is None


def test_zmq_port_clash_is_blamed_on_mooncakes_range_only_when_the_kv_ports_are_in_it() -> None:
    guide = zmq_hint([(30000, 30015)], chips=16)  # the guide's kv_port 30000
    assert "inside Mooncake's random port range 20000-35999" in guide
    assert "move kv_port to 36000 or above" in guide
    demo = zmq_hint([(36000, 36015)], chips=16)  # above the range: another cause
    assert "Mooncake's random range, so not that" in demo
    assert "get_open_port" in demo and "random port range" not in demo


async def test_up_and_down_over_the_real_sshd(sshd: Sshd, nodes_dir: str, tmp_path: Path) -> None:
    text = over_ssh(demo_text(tmp_path, block=sshd.block), sshd, tmp_path, nodes_dir)
    plan = build_plan(load_profile_text(text))
    transports: dict[str, Transport] = {n.name: SSHTransport(n) for n in plan.nodes}
    o = Orchestrator(plan, transports)
    try:
        assert await o.up(), {n: (v.state, v.reason) for n, v in o.views.items()}
        assert {v.state for v in o.views.values()} == {"ready"}
        again = Orchestrator(plan, transports)
        await again.adopt()
        assert {v.state for v in again.views.values()} == {"ready"}
        await again.close()
    finally:
        assert await o.down()
        await o.close()
        for t in transports.values():
            await t.close()
    assert {v.state for v in o.views.values()} == {"stopped"}
    os.sync()


def test_down_with_a_node_that_does_not_answer_exits_3_and_names_what_may_run(
    sshd: Sshd, nodes_dir: str, tmp_path: Path
) -> None:
    """A script running `down && reprovision` must not go on while decode-0 may still hold its chips."""
    text = over_ssh(demo_text(tmp_path, block=sshd.block), sshd, tmp_path, nodes_dir)
    profile = tmp_path / "demo.yaml"
    profile.write_text(text)
    try:
        assert cpconsole("up", profile).returncode == 0
        # decode-a's sshd is gone (port 1: refused), the same deployment otherwise
        profile.write_text(text.replace("  decode-a: {host: ", "  decode-a: {ssh: {port: 1}, host: "))
        done = cpconsole("down", profile)
        assert done.returncode == 3, done.stdout + done.stderr
        assert "decode-0 on decode-a may still run:" in done.stderr
        assert "stopped" in done.stdout.split("prefill-0", 1)[1].splitlines()[0]  # the reachable ones were stopped
    finally:
        profile.write_text(text)
        cpconsole("down", profile)


async def test_default_run_dir_under_home_is_adopted_and_stopped(tmp_path: Path) -> None:
    marker = f"cpconsole-test-{os.getpid()}"
    text = demo_text(tmp_path).replace(f"run_dir: {tmp_path}/run", f"run_dir: ~/{marker}")
    plan = build_plan(load_profile_text(text))
    first = Orchestrator(plan, local_transports(plan))
    try:
        assert await first.up(["decode-0"])
        await first.close()
        second = Orchestrator(plan, local_transports(plan))
        await second.adopt()
        assert second.views["decode-0"].state == "ready"
        assert await second.down()
        after = second.views["decode-0"]  # a new look: the narrowing above is no longer true
        assert after.state == "stopped"
        await second.close()
    finally:
        subprocess.run(["sh", "-c", f'rm -rf "$HOME"/{marker}'], check=False)
