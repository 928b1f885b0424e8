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
import signal
import sys
from collections.abc import Sequence

from .base import DEFAULT_TIMEOUT, ShellTransport, Stream, decide_status
from .errors import RemoteError, RemoteTimeout
from .scripts import BOOT_ID
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


def _local_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", os.defpath)])
    return env


class LocalTransport(ShellTransport):
    """Runs the node scripts with this machine's /bin/sh, as the current user."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.env = _local_env()

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
        return decide_status(handle, status_fields(handle.run_dir))

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


def _first_line(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().strip()
    except OSError:
        return None


def status_fields(run_dir: str) -> dict[str, str]:
    """What scripts.status prints, read directly: pidfile, exitcode, boot, proc `state starttime`."""
    run_dir = os.path.expanduser(run_dir)
    if not os.path.isdir(run_dir):
        return {"missing": ""}
    fields: dict[str, str] = {"boot": _first_line(BOOT_ID) or ""}
    pidfile = _first_line(os.path.join(run_dir, "pid"))
    if pidfile is not None:
        fields["pidfile"] = pidfile
    code = _first_line(os.path.join(run_dir, "exitcode"))
    if code is not None:
        fields["exitcode"] = code
    pid = pidfile.split()[0] if pidfile else ""
    stat = _first_line(f"/proc/{pid}/stat") if pid.isdigit() else None
    if stat:
        after_comm = stat.rsplit(") ", 1)[-1].split()  # field 3 onwards: state … starttime (22)
        if len(after_comm) >= 20:
            fields["proc"] = f"{after_comm[0]} {after_comm[19]}"
    return fields
