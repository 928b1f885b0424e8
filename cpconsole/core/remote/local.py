"""LocalTransport: nodes that are this machine (the demo, loopback "nodes"), via asyncio
subprocesses running the same node scripts as SSH does. One exception: `status`, which a
watching console asks for every process every few seconds, reads the same run-directory files and
/proc fields in-process (no shell per question) and is decided by the same `decide_status`.

Commands see the console's own Python environment first on PATH, so a profile for local nodes
can say `python3 -m cpconsole.sim …` and mean the interpreter cpconsole runs in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import stat
import sys
from collections.abc import Sequence

from .base import DEFAULT_TIMEOUT, ShellTransport, Stream, decide_status
from .errors import RemoteError, RemoteTimeout
from .scripts import BOOT_ID, STOPPED
from .types import ProcessHandle, ProcessStatus, RunResult

CHUNK = 1 << 16


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class LocalStream:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    async def read(self) -> bytes:
        assert self._proc.stdout is not None
        return await self._proc.stdout.read(CHUNK)

    async def close(self) -> None:
        _kill_group(self._proc)
        await asyncio.shield(self._drain_and_reap())  # finishes even if our caller is cancelled

    async def _drain_and_reap(self) -> None:
        # read to EOF so asyncio closes the pipe transport now, not when the loop is long gone
        assert self._proc.stdout is not None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._proc.stdout.read(), 5)
        await self._proc.wait()


def login_home() -> str | None:
    """This user's home from the password database: what `~` means on a node reached over SSH
    too, whatever $HOME the console happened to inherit (unset under some service managers,
    another user's under sudo)."""
    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return None
    return home if home.startswith("/") else None


def _local_env(home: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", os.defpath)])
    env.pop("HOME", None)  # no home: the node scripts refuse ~ (scripts.HOME) rather than use /
    if home:
        env["HOME"] = home
    return env


class LocalTransport(ShellTransport):
    """Runs the node scripts with this machine's /bin/sh, as the current user."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.home = login_home()
        self.env = _local_env(self.home)

    async def run(
        self, command: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, input: bytes | None = None
    ) -> RunResult:
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        try:
            # a new session per command, so a timeout can take its whole group down
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=self.env,
            )
        except OSError as exc:
            raise RemoteError(self.node, f"cannot run {argv[0]}: {exc.strerror}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except TimeoutError:
            raise RemoteTimeout(self.node, f"no answer within {timeout:g} s") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: never leave a child unreaped
                _kill_group(proc)
                await asyncio.shield(proc.communicate())  # drain the pipes too, or asyncio keeps them open
        return RunResult(proc.returncode, out, err)

    async def status(self, handle: ProcessHandle, *, timeout: float = DEFAULT_TIMEOUT) -> ProcessStatus:
        # in a thread and bounded in time: a run directory on a hung NFS mount must not stop the console
        read = asyncio.to_thread(status_fields, self._expand(handle.run_dir))
        try:
            return decide_status(handle, await asyncio.wait_for(read, timeout))
        except TimeoutError:
            raise RemoteTimeout(self.node, f"{handle.run_dir} did not answer within {timeout:g} s") from None

    def _expand(self, path: str) -> str:
        """A leading ~ as the node scripts resolve it (the same HOME)."""
        if path == "~" or path.startswith("~/"):
            if not self.home:
                raise RemoteError(self.node, "this user has no home directory, so ~ cannot be resolved")
            return self.home + path[1:]
        return path

    async def open_stream(self, script: str) -> Stream:
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            script,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            env=self.env,
        )
        return LocalStream(proc)


def _first_line(path: str, limit: int = 4096) -> str | None:
    """The first line of a regular file (of its first `limit` bytes). Opened without blocking and
    without following a symlink at the end: a pid file replaced by a FIFO would otherwise block
    the console's event loop, a device never end."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace").partition("\n")[0].strip()


def _after_comm(stat: str) -> list[str]:
    """/proc/PID/stat from field 3 on (state, ppid, pgrp, session, …, starttime at index 19)."""
    return stat.rsplit(") ", 1)[-1].split()


def _members(pid: str) -> int:
    """Live processes of this user whose group or session is `pid` (as scripts._count_members
    counts them)."""
    count = 0
    me = os.geteuid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _after_comm(_proc_line(f"/proc/{entry.name}/stat") or "")
        if len(fields) >= 4 and fields[0] != "Z" and pid in (fields[2], fields[3]):
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == me
    return count


def _proc_line(path: str) -> str | None:
    """A /proc file's first line (not a regular file, so _first_line would refuse it)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().strip()
    except OSError:
        return None


def status_fields(run_dir: str) -> dict[str, str]:
    """What scripts.status prints, read directly (`run_dir` absolute): pidfile, exitcode, stopped, boot, proc
    `state starttime`, and members when the leader is gone."""
    if not os.path.isdir(run_dir):
        return {"missing": ""}
    fields: dict[str, str] = {}
    pidfile = _first_line(os.path.join(run_dir, "pid"))
    if pidfile is not None:
        fields["pidfile"] = pidfile
    code = _first_line(os.path.join(run_dir, "exitcode"))
    if code is not None:
        fields["exitcode"] = code
    stopped = _first_line(os.path.join(run_dir, STOPPED))
    if stopped is not None:
        fields["stopped"] = stopped
    fields["boot"] = _proc_line(BOOT_ID) or ""
    words = pidfile.split() if pidfile else []
    pid = words[0] if words else ""
    proc = _after_comm(_proc_line(f"/proc/{pid}/stat") or "") if pid.isdigit() else []
    if len(proc) >= 20:
        fields["proc"] = f"{proc[0]} {proc[19]}"
    if pid.isdigit() and words[2:3] == [fields["boot"]] and (len(proc) < 20 or proc[0] == "Z"):
        fields["members"] = str(_members(pid))
    return fields
