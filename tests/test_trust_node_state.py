"""What cpconsole reads back from a node is untrusted input: a manifest or pid file that names a
process cpconsole did not start (init, a process of the operator's shell, another session's
leader) never validates or is answered `foreign`, and nothing is signalled; commands are never
taken from a node — through both transports (the SSH one against a real sshd)."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from cpconsole.core.remote import ShellTransport, scripts
from cpconsole.core.remote.base import handle_from_pidfile
from cpconsole.core.remote.errors import CommandFailed, NotOurs
from cpconsole.core.remote.manifest import Manifest
from cpconsole.core.remote.types import ProcessHandle

from .test_remote_processes import alive, run_dir_for, spec, wait_state

BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def start_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(") ", 1)[1].split()[19])


def manifest_naming(pid: int, ticks: int, **more: object) -> bytes:
    fields = {"process": "job", "pid": pid, "start_ticks": ticks, "boot_id": BOOT_ID, **more}
    return json.dumps(fields).encode()


@pytest.mark.parametrize("pid", [1, 0, -1, True, "4242", 4.0, 2**40, None])
def test_a_manifest_naming_no_pid_of_ours_does_not_validate(pid: object) -> None:
    decoded = Manifest.decode(manifest_naming(pid, start_ticks(1)))  # type: ignore[arg-type]
    if pid is None:  # a manifest still being written: valid, with no process to act on yet
        assert decoded is not None and decoded.pid is None
    else:
        assert decoded is None


def test_shapes_that_a_node_cannot_slip_through() -> None:
    good = Manifest.decode(manifest_naming(4242, 7))
    assert good is not None and good.pid == 4242
    for bad in (
        {"boot_id": "$(reboot)"},
        {"start_ticks": -3},
        {"container": "x; rm -rf /"},
        {"argv": "sh -c boom"},
        {"env": ["A=1"]},
    ):
        assert Manifest.decode(manifest_naming(4242, 7, **bad)) is None, bad
    like = ProcessHandle("n", "job", "/run/job", 0, 0, "")
    assert handle_from_pidfile(like, f"1 {start_ticks(1)} {BOOT_ID}\n".encode()) is None
    assert handle_from_pidfile(like, b"4242 7 not-a-boot-id\n") is None
    assert handle_from_pidfile(like, f"4242 7 {BOOT_ID}\n".encode()) is not None
    with pytest.raises(ValueError, match="no pid cpconsole started"):
        scripts.signal(ProcessHandle("n", "job", "/run/job", 1, start_ticks(1), BOOT_ID), "TERM")


async def test_a_manifest_pointing_at_a_process_we_did_not_start_is_foreign(
    transport: ShellTransport, nodes_dir: str, tmp_path: Path
) -> None:
    run_dir = run_dir_for(transport, nodes_dir)
    ours = await transport.spawn_detached(spec(run_dir, "sleep 60"))
    # not a session leader (a child of this test), and a session leader working elsewhere
    plain = subprocess.Popen(["sleep", "60"])
    leader = subprocess.Popen(["setsid", "sleep", "60"], cwd=tmp_path)
    try:
        for other in (plain, leader):
            Path(run_dir, "manifest.json").write_bytes(manifest_naming(other.pid, start_ticks(other.pid)))
            handle = await transport.find(run_dir)
            assert handle is not None and handle.pid == other.pid  # it parses: the node decides
            assert await transport.signal(handle, "TERM") == "foreign"  # and nothing was sent
            with pytest.raises(NotOurs, match="not a process cpconsole started there"):
                await transport.stop(handle, grace=0.5)
            assert alive(other.pid)
        assert await transport.stop(ours, grace=5)
        await wait_state(transport, ours, "exited")
    finally:
        for other in (plain, leader):
            other.kill()
            other.wait()


async def test_a_container_command_written_on_a_node_is_never_run(
    transport: ShellTransport, nodes_dir: str, tmp_path: Path
) -> None:
    run_dir = run_dir_for(transport, nodes_dir)
    handle = await transport.spawn_detached(spec(run_dir, "sleep 60"))
    mark = tmp_path / "ran"
    planted = json.loads(Path(run_dir, "manifest.json").read_text())
    planted.update(container="ctr", container_pidfile="/tmp/x", container_cli=["sh", "-c", f"touch {mark}", "--"])
    Path(run_dir, "manifest.json").write_text(json.dumps(planted))
    found = await transport.find(run_dir)  # the profile of this node has no container
    assert found is not None and found.container_cli == ("docker",) and found.container_pidfile is None
    status = await transport.stop(found, grace=5)
    assert status.state == "exited" and not mark.exists()
    assert not alive(handle.pid)


async def login_uid(transport: ShellTransport) -> int:
    return int((await transport.run("id -u")).text())


async def test_run_directories_are_the_login_users_alone(transport: ShellTransport, nodes_dir: str) -> None:
    run_dir = run_dir_for(transport, nodes_dir)
    handle = await transport.spawn_detached(spec(run_dir, "umask; sleep 60"))
    try:
        modes = {name: stat.S_IMODE(os.lstat(Path(run_dir, name)).st_mode) for name in os.listdir(run_dir)}
        assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700
        assert modes.pop("launch.sh") == 0o700  # it holds the env: nobody else reads it
        assert set(modes.values()) == {0o600}, modes  # log, pid, manifest
        for _ in range(100):
            if Path(run_dir, "log").read_text():
                break
            await asyncio.sleep(0.02)
        assert Path(run_dir, "log").read_text().strip() == "0077"  # the processes' own files too
    finally:
        await transport.stop(handle, grace=5)


async def test_a_run_directory_made_by_another_user_is_refused_with_why(
    transport: ShellTransport, nodes_dir: str
) -> None:
    me = await login_uid(transport)
    other = 0 if me != 0 else pwd.getpwnam("cptest").pw_uid
    planted = Path(run_dir_for(transport, nodes_dir, "planted"))
    planted.mkdir(parents=True, mode=0o777)
    planted.chmod(0o777)
    os.chown(planted, other, -1)
    (planted / ".api_key").symlink_to("/etc/cpconsole-stolen-key")  # where a key would have gone
    with pytest.raises(CommandFailed, match="belongs to another user") as caught:
        await transport.spawn_detached(spec(str(planted), "sleep 60"))
    assert "not this user's alone" in str(caught.value)
    assert os.listdir(planted) == [".api_key"]  # nothing written there
    refused = await transport.run(scripts.hand_key(str(planted), ".api_key"), input=b"secret")
    assert refused.exit_code == scripts.EXIT_NOT_OURS and not Path("/etc/cpconsole-stolen-key").exists()
    # a place above it that others can write (and not sticky like /tmp): they could swap it
    shared = Path(run_dir_for(transport, nodes_dir, "shared"))
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    with pytest.raises(CommandFailed, match="is writable by others"):
        await transport.spawn_detached(spec(str(shared / "job"), "sleep 60"))


async def test_a_pid_file_that_is_a_fifo_or_a_device_blocks_nothing(transport: ShellTransport, nodes_dir: str) -> None:
    run_dir = run_dir_for(transport, nodes_dir)
    handle = await transport.spawn_detached(spec(run_dir, "sleep 60"))
    try:
        pid_file = Path(run_dir, "pid")
        pid_file.unlink()
        os.mkfifo(pid_file)  # nobody ever writes it: a reader that opened it would wait forever
        # a hang guard, not a speed bound: the reading itself must not wait for a writer
        status = await asyncio.wait_for(transport.status(handle), 30)
        assert status.state == "gone"  # a FIFO is no pid file: nothing to go by, never read as one
        Path(run_dir, "manifest.json").unlink()
        os.symlink("/dev/zero", Path(run_dir, "manifest.json"))  # would never end
        assert await asyncio.wait_for(transport.find(run_dir), 30) is None
    finally:
        Path(run_dir, "pid").unlink()
        Path(run_dir, "pid").write_text(f"{handle.pid} {handle.start_ticks} {handle.boot_id}\n")
        await transport.stop(handle, grace=5)
