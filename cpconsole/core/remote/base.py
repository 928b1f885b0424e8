"""The Transport protocol and what every transport shares: detached processes, status, safe
stop and gap-free tails, all expressed as the sh scripts of `scripts.py` over two primitives —
`run` (a command to completion) and `open_stream` (a command's stdout as it comes)."""

from __future__ import annotations

import asyncio
import json
import posixpath
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from . import scripts
from .errors import AlreadyRunning, CommandFailed, RemoteError
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
    async def signal(self, handle: ProcessHandle, signame: str, *, timeout: float = DEFAULT_TIMEOUT) -> str: ...
    async def stop(self, handle: ProcessHandle, *, grace: float = 10.0) -> ProcessStatus: ...
    async def find(self, run_dir: str, *, timeout: float = DEFAULT_TIMEOUT) -> ProcessHandle | None: ...
    def tail(self, path: str, from_offset: int = 0) -> AsyncIterator[TailItem]: ...
    async def read_file(self, path: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes: ...
    async def write_file(
        self, path: str, data: bytes, *, mode: int = 0o644, timeout: float = DEFAULT_TIMEOUT
    ) -> None: ...
    async def close(self) -> None: ...


def decide_status(handle: ProcessHandle, fields: dict[str, str]) -> ProcessStatus:
    """Running only if the pid is still the process we started (same boot, same start time)."""
    if "missing" in fields:
        return ProcessStatus("gone", detail="run directory is missing")
    if fields.get("boot") != handle.boot_id:
        return ProcessStatus("gone", detail="the node rebooted")
    pidfile = fields.get("pidfile", "").split()
    if pidfile[:2] != [str(handle.pid), str(handle.start_ticks)]:
        return ProcessStatus("gone", detail="the run directory belongs to a newer start")
    proc = fields.get("proc", "").split()
    code = fields.get("exitcode")
    if len(proc) == 2 and proc[1] == str(handle.start_ticks) and proc[0] != "Z":
        return ProcessStatus("running")
    if code is not None and code.lstrip("-").isdigit():
        value = int(code)
        if 128 < value <= 128 + 64:  # sh reports death by signal N as 128+N; say -N, as Python does
            return ProcessStatus("exited", 128 - value, f"killed by signal {value - 128}")
        return ProcessStatus("exited", value)
    return ProcessStatus("exited", None, "killed before it could record an exit code")


def handle_from_manifest(node: str, run_dir: str, data: bytes) -> ProcessHandle | None:
    try:
        manifest = json.loads(data)
        return ProcessHandle(
            node=node,
            name=str(manifest["process"]),
            run_dir=run_dir,
            pid=int(manifest["pid"]),
            start_ticks=int(manifest["start_ticks"]),
            boot_id=str(manifest["boot_id"]),
            container=manifest.get("container") or None,
            container_pidfile=manifest.get("container_pidfile") or None,
            container_cli=tuple(map(str, manifest.get("container_cli") or ("docker",))),
        )
    except (ValueError, KeyError, TypeError):
        return None


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
        head = json.dumps({"process": spec.name, **spec.manifest}, ensure_ascii=False)[:-1]
        script = scripts.spawn(spec.run_dir, head)
        result = await self.run(script, timeout=timeout, input=spec.script.encode())
        if result.exit_code == 98:
            raise AlreadyRunning(self.node, f"{spec.name} is still running as pid {result.text().strip()}")
        if not result.ok:
            raise CommandFailed(
                self.node, f"cannot start {spec.name} in {spec.run_dir}", result.exit_code, result.stderr
            )
        pid, ticks, boot = result.text().split()
        # the manifest as written, with the pid fields: the same handle adoption will read back
        manifest = json.dumps({"process": spec.name, **spec.manifest, "pid": int(pid), "start_ticks": int(ticks),
                               "boot_id": boot}).encode()  # fmt: skip
        handle = handle_from_manifest(self.node, spec.run_dir, manifest)
        if handle is None:  # every field was just set: a manifest not of this kind
            raise CommandFailed(self.node, f"cannot start {spec.name}: bad manifest", result.exit_code, result.stderr)
        return handle

    async def status(self, handle: ProcessHandle, *, timeout: float = DEFAULT_TIMEOUT) -> ProcessStatus:
        result = await self.check(scripts.status(handle.run_dir), "status", timeout=timeout)
        return decide_status(handle, scripts.parse_status(result.text()))

    async def signal(self, handle: ProcessHandle, signame: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Signal the process group. Answers sent | gone | recycled | rebooted | failed."""
        result = await self.check(scripts.signal(handle, signame), f"cannot signal {handle.name}", timeout=timeout)
        return result.text().strip()

    async def stop(self, handle: ProcessHandle, *, grace: float = 10.0, poll: float = 0.1) -> ProcessStatus:
        """SIGTERM to the group, then SIGKILL after `grace` seconds; never a recycled pid."""
        answer = await self.signal(handle, "TERM")
        if answer != "sent":
            return await self.status(handle)
        deadline = time.monotonic() + grace
        status = await self.status(handle)
        while status.state == "running" and time.monotonic() < deadline:
            await asyncio.sleep(poll)
            status = await self.status(handle)
        if status.state != "running":
            # the leader is gone; what it left in its group gets the rest of the grace, then SIGKILL
            while await self._group_alive(handle):
                if time.monotonic() >= deadline:
                    await self.check(scripts.kill_group(handle), "cannot signal the group", timeout=DEFAULT_TIMEOUT)
                    break
                await asyncio.sleep(poll)
            return status
        await self.signal(handle, "KILL")
        for _ in range(50):  # a killed group may linger as zombies until PID 1 reaps it
            status = await self.status(handle)
            if status.state != "running":
                return status
            await asyncio.sleep(poll)
        return await self.status(handle)

    async def _group_alive(self, handle: ProcessHandle) -> bool:
        result = await self.check(
            scripts.group_alive(handle), "cannot check the process group", timeout=DEFAULT_TIMEOUT
        )
        return result.text().strip() == "alive"

    async def find(self, run_dir: str, *, timeout: float = DEFAULT_TIMEOUT) -> ProcessHandle | None:
        """The process a run directory's manifest names, if the manifest is complete."""
        result = await self.run(scripts.read(posixpath.join(run_dir, "manifest.json")), timeout=timeout)
        return handle_from_manifest(self.node, run_dir, result.stdout) if result.ok else None

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
                stream = await self.open_stream(scripts.tail(path, offset))
                if down:
                    yield TailEvent("resumed", f"from byte {offset}")
                    down = False
                splitter = NoticeSplitter(name)
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
