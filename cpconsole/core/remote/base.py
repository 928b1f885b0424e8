"""The Transport protocol and what every transport shares: detached processes, status, safe
stop and gap-free tails, all expressed as the sh scripts of `scripts.py` over two primitives —
`run` (a command to completion) and `open_stream` (a command's stdout as it comes)."""

from __future__ import annotations

import asyncio
import posixpath
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Protocol

from . import manifest, scripts
from .errors import AlreadyRunning, CommandFailed, NotOurs, RemoteError
from .manifest import BOOT_ID, Manifest, valid_pid
from .tailing import Backoff, Notice, NoticeSplitter
from .types import ProcessHandle, ProcessStatus, RunResult, SpawnSpec, TailChunk, TailEvent, TailItem

DEFAULT_TIMEOUT = 15.0


class Stream(Protocol):
    async def read(self) -> bytes:
        """The next bytes; b"" once the command's output has ended."""
        ...

    async def close(self) -> None: ...


class Transport(Protocol):
    """How cpconsole touches one node."""

    node: str

    async def run(
        self, command: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, input: bytes | None = None
    ) -> RunResult: ...
    async def spawn_detached(self, spec: SpawnSpec, *, timeout: float = DEFAULT_TIMEOUT) -> ProcessHandle: ...
    async def status(self, handle: ProcessHandle, *, timeout: float = DEFAULT_TIMEOUT) -> ProcessStatus: ...
    async def signal(
        self, handle: ProcessHandle, signame: str, *, timeout: float = DEFAULT_TIMEOUT, stop_note: str = ""
    ) -> str: ...
    async def stop(self, handle: ProcessHandle, *, grace: float = 10.0, requested_by: str = "") -> ProcessStatus: ...
    async def find(self, run_dir: str, *, timeout: float = DEFAULT_TIMEOUT) -> ProcessHandle | None: ...
    def tail(self, path: str, from_offset: int = 0) -> AsyncIterator[TailItem]: ...
    async def open_stream(self, script: str) -> Stream: ...
    async def read_file(self, path: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes: ...
    async def write_file(
        self, path: str, data: bytes, *, mode: int = 0o644, timeout: float = DEFAULT_TIMEOUT
    ) -> None: ...
    async def close(self) -> None: ...


def decide_status(handle: ProcessHandle, fields: dict[str, str]) -> ProcessStatus:
    """Running only if the pid is still the process we started (same boot, same start time) or,
    its wrapper gone before recording an exit code, while its group or session has members."""
    if "missing" in fields:
        return ProcessStatus("gone", detail="run directory is missing")
    if fields.get("boot") != handle.boot_id:
        return ProcessStatus("gone", detail="the node rebooted")
    pidfile = fields.get("pidfile", "").split()
    if pidfile[:2] != [str(handle.pid), str(handle.start_ticks)]:
        return ProcessStatus("gone", detail="the run directory belongs to a newer start")
    proc = fields.get("proc", "").split()
    code = fields.get("exitcode")
    stopped_by = fields.get("stopped", "")
    if len(proc) == 2 and proc[1] == str(handle.start_ticks) and proc[0] != "Z":
        return ProcessStatus("running", stopped_by=stopped_by)
    members = fields.get("members", "0")
    leftovers = int(members) if members.isdigit() else 0
    plural = "process" if leftovers == 1 else "processes"
    if code is None and leftovers:
        detail = f"its wrapper (pid {handle.pid}) is gone; {leftovers} {plural} of its group still run"
        return ProcessStatus("running", None, detail, leftovers, stopped_by)
    left = f"; {leftovers} {plural} of its group still run" if leftovers else ""
    if code is not None and code.lstrip("-").isdigit():
        value = int(code)
        if 128 < value <= 128 + 64:  # sh reports death by signal N as 128+N; say -N, as Python does
            return ProcessStatus("exited", 128 - value, f"killed by signal {value - 128}{left}", leftovers, stopped_by)
        return ProcessStatus("exited", value, left.removeprefix("; "), leftovers, stopped_by)
    return ProcessStatus("exited", None, "killed before it could record an exit code", 0, stopped_by)


def handle_from_pidfile(like: ProcessHandle, data: bytes) -> ProcessHandle | None:
    """The process a run directory's pid file (`pid start_ticks boot_id`, written by the wrapper
    itself) names, the rest as in `like`: how a process is found when its manifest is lost."""
    words = data.decode("ascii", "replace").split()
    if len(words) != 3 or not words[0].isdigit() or not words[1].isdigit() or not BOOT_ID.fullmatch(words[2]):
        return None
    pid = int(words[0])
    return replace(like, pid=pid, start_ticks=int(words[1]), boot_id=words[2]) if valid_pid(pid) else None


SPAWN_FAILURES = {
    scripts.SPAWN_NO_RUN_DIR: ": the run directory could not be written (disk full? permissions?)",
    scripts.SPAWN_NOT_OURS: ": the run directory is not this user's alone",
    scripts.SPAWN_NO_PID: ": the process never wrote its pid file (disk full?) and was not started",
    scripts.SPAWN_NO_MANIFEST: ": manifest.json could not be written (disk full?); the process was stopped again",
}


class ShellTransport(ABC):
    """A node reached through sh: subclasses provide `run` and `open_stream`."""

    def __init__(self, node: str) -> None:
        self.node = node

    @abstractmethod
    async def run(
        self, command: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, input: bytes | None = None
    ) -> RunResult:
        """Run a sh script (str) or an argv to completion."""

    @abstractmethod
    async def open_stream(self, script: str) -> Stream:
        """Start a sh script and hand back its stdout as a stream."""

    async def close(self) -> None:
        return None

    async def check(self, script: str, what: str, *, timeout: float, input: bytes | None = None) -> RunResult:
        result = await self.run(script, timeout=timeout, input=input)
        if not result.ok:
            raise CommandFailed(self.node, what, result.exit_code, result.stderr)
        return result

    async def read_file(self, path: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        return (await self.check(scripts.read(path), f"cannot read {path}", timeout=timeout)).stdout

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o644, timeout: float = DEFAULT_TIMEOUT) -> None:
        await self.check(scripts.write(path, mode), f"cannot write {path}", timeout=timeout, input=data)

    async def spawn_detached(self, spec: SpawnSpec, *, timeout: float = DEFAULT_TIMEOUT) -> ProcessHandle:
        script = scripts.spawn(spec.run_dir, spec.manifest.head(), log_cap=spec.log_cap, log_every=spec.log_every)
        result = await self.run(script, timeout=timeout, input=spec.script.encode())
        if result.exit_code == scripts.SPAWN_RUNNING:
            raise AlreadyRunning(self.node, f"{spec.name} is still running as pid {result.text().strip()}")
        if result.exit_code is None:  # the session ended without an exit status: the connection went
            raise RemoteError(
                self.node,
                f"the connection dropped while {spec.name} was being started in {spec.run_dir}: it may be running "
                "(its run directory says: `cpconsole status` adopts it if so) or not; nothing else was done",
            )
        if not result.ok:
            why = SPAWN_FAILURES.get(result.exit_code or 0, "")
            raise CommandFailed(
                self.node, f"cannot start {spec.name} in {spec.run_dir}{why}", result.exit_code, result.stderr
            )
        pid, ticks, boot = result.text().split()
        # the manifest as written, with the pid fields: the same handle adoption will read back
        written = spec.manifest.with_pid(int(pid), int(ticks), boot)
        handle = written.handle(
            self.node,
            spec.run_dir,
            container_cli=spec.manifest.container_cli,
            container_pidfile=spec.manifest.container_pidfile,
        )
        assert handle is not None  # every pid field was just set
        return handle

    async def status(self, handle: ProcessHandle, *, timeout: float = DEFAULT_TIMEOUT) -> ProcessStatus:
        result = await self.check(scripts.status(handle.run_dir), "status", timeout=timeout)
        return decide_status(handle, scripts.parse_status(result.text()))

    async def signal(
        self, handle: ProcessHandle, signame: str, *, timeout: float = DEFAULT_TIMEOUT, stop_note: str = ""
    ) -> str:
        """Signal the process group and session, or what is left of them. Answers sent | gone |
        recycled | rebooted | failed."""
        script = scripts.signal(handle, signame, stop_note=stop_note)
        result = await self.check(script, f"cannot signal {handle.name}", timeout=timeout)
        return result.text().strip()

    async def stop(
        self, handle: ProcessHandle, *, grace: float = 10.0, poll: float = 0.1, requested_by: str = ""
    ) -> ProcessStatus:
        """SIGTERM to the group, then SIGKILL after `grace` seconds to whatever of it is left; never
        a recycled pid. Returns once nothing of the group runs (or SIGKILL could not end it).
        `requested_by` is recorded on the node: the end is a stop, not a failure."""
        answer = await self.signal(handle, "TERM", stop_note=requested_by)
        if answer == "foreign":
            raise NotOurs(
                self.node,
                f"{handle.name}: pid {handle.pid} in {handle.run_dir} is not a process cpconsole started there "
                "(its records were edited?); nothing was signalled",
            )
        status = await self.status(handle)
        if answer != "sent":
            return status
        deadline = time.monotonic() + grace
        while not status.settled and time.monotonic() < deadline:
            await asyncio.sleep(poll)
            status = await self.status(handle)
        if status.settled:
            return status
        await self.signal(handle, "KILL")
        for _ in range(50):  # a killed group may linger as zombies until PID 1 reaps it
            status = await self.status(handle)
            if status.settled:
                return status
            await asyncio.sleep(poll)
        return status

    async def find(
        self,
        run_dir: str,
        *,
        container_cli: tuple[str, ...] = ("docker",),
        container_pidfile: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> ProcessHandle | None:
        """The process a run directory's manifest names, if the manifest is complete and valid;
        its container reached as the caller says (the profile's way, never the node's)."""
        result = await self.run(scripts.read(posixpath.join(run_dir, manifest.FILE)), timeout=timeout)
        found = Manifest.decode(result.stdout) if result.ok else None
        if found is None:
            return None
        return found.handle(self.node, run_dir, container_cli=container_cli, container_pidfile=container_pidfile)

    async def tail(self, path: str, from_offset: int = 0) -> AsyncIterator[TailItem]:
        """Follow a file from a byte offset, forever, across reconnects, reporting truncation,
        rotation and disconnects as events. Chunks carry their offset in the current file."""
        offset, inode = from_offset, None
        backoff = Backoff()
        down = False
        name = posixpath.basename(path)
        while True:
            try:
                found = (await self.check(scripts.stat(path), "stat", timeout=DEFAULT_TIMEOUT)).text().split()
                if len(found) == 2:
                    size, new_inode = int(found[0]), found[1]
                    if inode is not None and new_inode != inode:
                        yield TailEvent("rotated", f"{path} was replaced")
                        offset = 0
                    elif size < offset:
                        yield TailEvent("truncated", f"{path} shrank to {size} bytes")
                        offset = 0
                    inode = new_inode
                shown_as = scripts.follow_name(name)
                stream = await self.open_stream(scripts.tail(path, offset, shown_as))
                if down:
                    yield TailEvent("resumed", f"from byte {offset}")
                    down = False
                splitter = NoticeSplitter(shown_as)
                try:
                    while data := await stream.read():
                        backoff.reset()
                        for piece in splitter.feed(data):
                            if isinstance(piece, Notice):
                                if piece.kind in ("truncated", "rotated"):
                                    offset = 0
                                    inode = None if piece.kind == "rotated" else inode
                                if piece.kind != "other":
                                    yield TailEvent(piece.kind, piece.text)
                                continue
                            yield TailChunk(offset, piece)
                            offset += len(piece)
                    if held := splitter.flush():
                        yield TailChunk(offset, held)
                        offset += len(held)
                finally:
                    await stream.close()
                raise RemoteError(self.node, "the tail stream ended")
            except RemoteError as exc:
                if not down:
                    yield TailEvent("disconnected", str(exc))
                    down = True
                await asyncio.sleep(backoff.next())
