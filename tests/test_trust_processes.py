"""Never lose a process: what a wrapper started is found, shown and stopped after the wrapper is
killed, a stop is told apart from a failure, and a start whose records cannot be written leaves
nothing running — through both transports (the SSH one against a real sshd)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpconsole.core.remote import AlreadyRunning, CommandFailed, LocalTransport, ShellTransport, SpawnSpec
from cpconsole.core.remote.local import login_home
from cpconsole.core.remote.manifest import Manifest
from cpconsole.core.remote.types import ProcessHandle

from .test_remote_processes import alive, run_dir_for, spec


async def wait_for_file(path: Path) -> str:
    for _ in range(400):
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        await asyncio.sleep(0.025)
    raise AssertionError(f"{path} never appeared")


async def wait_until_dead(pid: int) -> None:
    for _ in range(400):
        if not alive(pid):
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"pid {pid} still alive")


async def started_with_child(transport: ShellTransport, nodes_dir: str) -> tuple[ProcessHandle, int, str]:
    """A detached job whose server (a child of launch.sh) writes its pid; the wrapper is the leader."""
    run_dir = run_dir_for(transport, nodes_dir, "server")
    handle = await transport.spawn_detached(spec(run_dir, "sleep 120 & echo $! > server.pid; wait", "server"))
    server = int(await wait_for_file(Path(run_dir, "server.pid")))
    return handle, server, run_dir


async def test_killed_wrapper_leaves_a_running_process_that_status_shows_and_stop_ends(
    transport: ShellTransport, nodes_dir: str
) -> None:
    handle, server, run_dir = await started_with_child(transport, nodes_dir)
    os.kill(handle.pid, signal.SIGKILL)  # the pid `status` shows: the wrapper
    await wait_until_dead(handle.pid)
    assert alive(server)

    status = await transport.status(handle)
    assert status.state == "running" and status.leftovers >= 1, status
    assert f"wrapper (pid {handle.pid}) is gone" in status.detail

    # a second start would lose it: refused while anything of the group lives
    with pytest.raises(AlreadyRunning, match=f"as pid {handle.pid}"):
        await transport.spawn_detached(spec(run_dir, "sleep 1", "server"))

    stopped = await transport.stop(handle, grace=5, requested_by="tester@jump")
    assert stopped.settled, stopped
    assert not alive(server)
    assert stopped.stopped_by == "tester@jump"


async def test_a_group_member_that_ignores_term_is_killed_after_the_wrapper_died(
    transport: ShellTransport, nodes_dir: str
) -> None:
    run_dir = run_dir_for(transport, nodes_dir, "stubborn")
    body = "trap '' TERM; echo $$ > server.pid; while :; do sleep 0.1; done"
    handle = await transport.spawn_detached(spec(run_dir, body, "stubborn"))
    server = int(await wait_for_file(Path(run_dir, "server.pid")))
    os.kill(handle.pid, signal.SIGKILL)
    await wait_until_dead(handle.pid)
    stopped = await transport.stop(handle, grace=0.5)
    assert stopped.settled and not alive(server)


async def test_a_member_that_left_the_group_is_still_found_through_the_session(
    transport: ShellTransport, nodes_dir: str
) -> None:
    """setpgid in a child moves it out of the process group, not out of the session."""
    run_dir = run_dir_for(transport, nodes_dir, "moved")
    moved = "import os, time; os.setpgid(0, 0); open('server.pid', 'w').write(str(os.getpid())); time.sleep(120)"
    handle = await transport.spawn_detached(spec(run_dir, f'exec /usr/bin/python3 -c "{moved}"', "moved"))
    server = int(await wait_for_file(Path(run_dir, "server.pid")))
    os.kill(handle.pid, signal.SIGKILL)
    await wait_until_dead(handle.pid)
    assert (await transport.status(handle)).state == "running"
    assert (await transport.stop(handle, grace=5)).settled and not alive(server)


async def test_a_stop_is_recorded_and_a_crash_is_not(transport: ShellTransport, nodes_dir: str) -> None:
    handle, _, run_dir = await started_with_child(transport, nodes_dir)
    stopped = await transport.stop(handle, grace=5, requested_by="ops@jump 2026-12-02T05:00:00")
    assert (stopped.state, stopped.stopped_by) == ("exited", "ops@jump 2026-12-02T05:00:00")
    crashed = await transport.spawn_detached(spec(run_dir, "exit 3", "server"))
    for _ in range(200):
        status = await transport.status(crashed)
        if status.state == "exited":
            break
        await asyncio.sleep(0.025)
    assert (status.exit_code, status.stopped_by) == (3, "")  # a new start forgets the old stop
    # stopping what already ended acknowledges its end; the exit code stays what it was
    acknowledged = await transport.stop(crashed, grace=1, requested_by="ops@jump")
    assert (acknowledged.exit_code, acknowledged.stopped_by) == (3, "ops@jump")


@pytest.fixture
def full_disk(nodes_dir: str) -> Iterator[Path]:
    """A 64 KiB tmpfs, writable by the SSH tests' login user, filled up to its last bytes."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = Path(nodes_dir, "small")
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=1777", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path, leave: int) -> None:
    """Fill the file system under `directory` until `leave` bytes are free."""
    stats = os.statvfs(directory)
    (directory / "filler").write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - leave))
    stats = os.statvfs(directory)
    assert stats.f_bavail * stats.f_frsize == leave


async def test_a_start_whose_manifest_cannot_be_written_fails_and_leaves_nothing_running(
    transport: ShellTransport, full_disk: Path
) -> None:
    run_dir = full_disk / "job"
    run_dir.mkdir(mode=0o700)  # the login user's own, as a run directory must be
    os.chown(run_dir, int((await transport.run("id -u")).text()), -1)
    fill(full_disk, leave=2 * 4096)  # a page for launch.sh and one for the pid file; none for the manifest
    with pytest.raises(CommandFailed, match=r"manifest\.json could not be written") as caught:
        await transport.spawn_detached(
            SpawnSpec(str(run_dir), "#!/bin/sh\nsleep 120\n", Manifest("job", profile="t", started_by="x" * 16384))
        )
    assert "the process was stopped again" in str(caught.value)
    assert not (run_dir / "manifest.json").exists()
    pid = int((run_dir / "pid").read_text().split()[0])  # the wrapper had started …
    for _ in range(400):  # … and nothing of its group is left
        group = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True, check=False)
        if not [p for p in group.stdout.split() if alive(int(p))]:
            break
        await asyncio.sleep(0.025)
    else:
        raise AssertionError(f"group {pid} still runs: {group.stdout}")


@pytest.mark.parametrize("inherited", [None, "/tmp/not-the-home"], ids=["HOME-unset", "HOME-elsewhere"])
async def test_tilde_is_the_login_home_whatever_home_the_console_inherited(
    monkeypatch: pytest.MonkeyPatch, inherited: str | None
) -> None:
    """With HOME unset, ~/x once meant /x to the node's shell and $PWD-less Python disagreed: a
    second console then started a second rank beside the first."""
    home = login_home()
    assert home
    base = f"~/cpconsole-test-{os.getpid()}-{inherited is None}"
    if inherited is None:
        monkeypatch.delenv("HOME", raising=False)
    else:
        monkeypatch.setenv("HOME", inherited)
    node = LocalTransport("local-node")
    try:
        handle = await node.spawn_detached(spec(f"{base}/job", "sleep 30"))
        assert Path(home, base[2:], "job", "pid").exists()
        monkeypatch.setenv("HOME", home)  # another console, as the user usually starts it
        other = LocalTransport("local-node")
        assert await other.find(f"{base}/job") == handle
        assert (await other.status(handle)).state == "running"
        assert (await other.stop(handle, grace=5)).settled
    finally:
        subprocess.run(["rm", "-rf", str(Path(home, base[2:]))], check=False)


async def test_a_node_without_a_home_refuses_tilde_instead_of_using_the_root_directory() -> None:
    node = LocalTransport("local-node")
    node.env.pop("HOME")
    with pytest.raises(CommandFailed, match="HOME: is not set on this node, so ~ cannot be resolved"):
        await node.spawn_detached(spec("~/cpconsole-never/job", "sleep 30"))
    assert not Path("/cpconsole-never").exists()
