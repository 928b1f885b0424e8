"""One change of a deployment at a time, across processes and hosts: a second up is refused with
its holder named, down asks an up under way to stop and waits for it, and a lock whose holder went
away (killed console, lost connection) is taken over with a message — through both transports
for the lock itself, through the CLI for the verbs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from cpconsole.core.orchestrate.lock import DeploymentBusy, DeploymentLock, Holder, lock_dir
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import ShellTransport

from .conftest import write_profile
from .simcluster import demo_text
from .test_cli import cpconsole
from .test_trust_orchestrate import processes


def holder(who: str, verb: str = "up") -> Holder:
    return Holder(who, 4242, verb, "2026-12-02T06:00:00")


async def test_one_holder_at_a_time_and_a_cancel_reaches_it(transport: ShellTransport, nodes_dir: str) -> None:
    directory = f"{nodes_dir}/{transport.node}/deployment"
    first = DeploymentLock(transport, directory, holder("alice@jump"))
    await first.acquire()
    with pytest.raises(DeploymentBusy, match=r"alice@jump \(pid 4242\), running up since 2026-12-02T06:00:00"):
        await DeploymentLock(transport, directory, holder("bob@jump")).acquire()

    stopper = DeploymentLock(transport, directory, holder("carol@jump", "down"))
    waiting = asyncio.create_task(stopper.acquire(wait=30, cancel_holder=True))
    await asyncio.wait_for(first.cancelled.wait(), 30)  # the heartbeat carries the request
    assert first.cancelled_by == "carol@jump" and not waiting.done()
    await first.release()
    await waiting
    assert stopper.notices == [f"asked {holder('alice@jump')} to stop", f"waited for {holder('alice@jump')} to finish"]
    await stopper.release()


async def test_a_holder_that_went_away_is_taken_over_with_a_message(transport: ShellTransport, nodes_dir: str) -> None:
    directory = f"{nodes_dir}/{transport.node}/deployment"
    gone = DeploymentLock(transport, directory, holder("dave@jump"))
    await gone.acquire()
    assert gone._stream is not None
    await gone._stream.close()  # the console died: no release, the connection or pipe just ends
    successor = DeploymentLock(transport, directory, holder("erin@jump", "down"))
    await successor.acquire(wait=30)
    assert f"took over the lock of {holder('dave@jump')}: it went away without releasing it" in successor.notices
    await successor.release()
    clean = DeploymentLock(transport, directory, holder("frank@jump"))
    await clean.acquire()
    assert clean.notices == []  # a released lock is no crash
    await clean.release()


def up_holding_the_lock(tmp_path: Path, startup: str) -> tuple[Path, subprocess.Popen[str]]:
    """The demo's `up` started (its models loading for `startup` seconds), once it holds the lock
    (the event: its holder file is written)."""
    profile = write_profile(tmp_path, demo_text(tmp_path, startup=startup))
    holder_file = Path(lock_dir(build_plan(load_profile_text(profile.read_text())))[1], "holder")
    up = [sys.executable, "-m", "cpconsole", "up", str(profile)]
    starting = subprocess.Popen(up, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(2400):
        text = holder_file.read_text() if holder_file.exists() else ""
        if text.strip() and json.loads(text)["verb"] == "up":
            return profile, starting
        if starting.poll() is not None:
            raise AssertionError(starting.communicate())
        subprocess.run(["sleep", "0.025"], check=False)
    starting.kill()
    raise AssertionError("the up never held the lock")


def test_down_stops_an_up_under_way_and_a_second_up_is_refused(tmp_path: Path) -> None:
    profile, starting = up_holding_the_lock(tmp_path, "6")  # the first up holds the lock
    try:
        second = cpconsole("up", profile)
        assert second.returncode == 5, second.stderr
        assert "another change of this deployment is under way" in second.stderr and "running up since" in second.stderr

        stopped = cpconsole("down", profile)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "asked" in stopped.stderr and "running up since" in stopped.stderr and "to stop" in stopped.stderr
        _, err = starting.communicate(timeout=60)
        assert starting.returncode == 1 and "cancelled" in err, err
        assert {p["state"] for p in processes(profile).values()} <= {"stopped", "planned"}
        assert cpconsole("status", profile).returncode == 4
    finally:
        if starting.poll() is None:
            starting.kill()
        cpconsole("down", profile)


async def test_release_leaves_no_process_behind(transport: ShellTransport, nodes_dir: str) -> None:
    directory = f"{nodes_dir}/{transport.node}/deployment"
    lock = DeploymentLock(transport, directory, holder("gina@jump"))
    await lock.acquire()
    for _ in range(400):  # the heartbeat's sleep is running beside the holding shell
        if [p for p in in_directory(directory) if p.info["name"] == "sleep"]:
            break
        await asyncio.sleep(0.025)
    await lock.release()
    assert [p.info["cmdline"] for p in in_directory(directory)] == []


def in_directory(directory: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cwd", "name", "cmdline", "status"]):
        if process.info["cwd"] == directory and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def test_an_up_whose_lock_holder_dies_stops_and_says_so(tmp_path: Path) -> None:
    """The holder of the lock is a shell on the profile's first node, alive as long as its
    connection: when it dies (a dropped connection kills it), the lock is free for anyone, so the
    `up` holding it stops within seconds and says why — it does not go on to start the proxy."""
    profile, starting = up_holding_the_lock(tmp_path, "20")
    try:
        shells = [
            p for p in psutil.process_iter(["cmdline"]) if any("holder.tmp" in word for word in p.info["cmdline"] or [])
        ]
        assert len(shells) == 1
        shells[0].kill()  # the holder on the node dies, as with its SSH connection
        _, err = starting.communicate(timeout=120)  # a hang guard: it stops within seconds
        assert starting.returncode == 1, err
        assert "the deployment's lock on prefill-a was lost" in err
        assert "stage proxy started" not in err  # nothing more was started after the lock was gone
    finally:
        if starting.poll() is None:
            starting.kill()
        cpconsole("down", profile)
