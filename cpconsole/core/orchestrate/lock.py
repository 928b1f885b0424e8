"""One change at a time per deployment: `up`, `down` and `restart` — from any console or script,
on any jump host — hold a lock on the profile's first node for as long as they run (flock in the
run directory base, held by a small shell that the kernel releases when it ends). A second change
is refused with the holder named; `down` may instead ask the holder to stop and wait for it. A
holder that went away without releasing (its console was killed) is taken over with a message."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field

from ..plan import LaunchPlan
from ..remote import RemoteError, Transport, scripts
from ..remote.base import Stream
from ..tasks import cancel_and_wait

ANSWER_TIMEOUT = 30.0  # for the node to say held / busy, beyond any wait asked for


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a deployment's lock, as written next to it on the node."""

    who: str
    pid: int
    verb: str
    since: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))

    def encode(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def decode(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(str(data["who"]), int(data["pid"]), str(data["verb"]), str(data["since"]))
        except (ValueError, KeyError, TypeError):
            return None

    def __str__(self) -> str:
        return f"{self.who} (pid {self.pid}), running {self.verb} since {self.since}"


def _describe(text: str) -> str:
    holder = Holder.decode(text)
    return str(holder) if holder else "someone (the holder left no name)"


class DeploymentBusy(Exception):
    """Another up/down/restart of this deployment is under way."""

    def __init__(self, node: str, holder: str) -> None:
        super().__init__(f"another change of this deployment is under way: {_describe(holder)} (lock on {node})")


def lock_dir(plan: LaunchPlan) -> tuple[str, str]:
    """(node, directory) of a deployment's lock: the run directory base of its first node."""
    first = plan.nodes[0]
    return first.name, posixpath.join(first.run_dir, plan.run_key)


class DeploymentLock:
    def __init__(self, transport: Transport, directory: str, holder: Holder) -> None:
        self.transport = transport
        self.directory = directory
        self.holder = holder
        self.notices: list[str] = []  # what acquiring had to do: take over, ask another to stop, wait
        self.cancelled = asyncio.Event()  # another operator's down asked this holder to stop
        self.cancelled_by = ""
        # the holder on the node is gone (its connection dropped, it was killed): the lock is free
        # for anyone, so the change holding it must stop
        self.lost = asyncio.Event()
        self._stream: Stream | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending = b""
        self._holder_pid: int | None = None  # the shell on the node that holds the lock

    async def acquire(self, *, wait: float = 0.0, cancel_holder: bool = False) -> None:
        """Hold the lock, or raise DeploymentBusy. With `cancel_holder`, a holder is asked to stop
        first; with `wait`, its end is waited for that many seconds."""
        script = scripts.hold_lock(
            self.directory, self.holder.encode(), wait=int(wait), cancel_note=self.holder.who if cancel_holder else ""
        )
        self._stream = await self.transport.open_stream(script)
        try:
            await asyncio.wait_for(self._until_held(self._stream), wait + ANSWER_TIMEOUT)
        except BaseException:
            await self._stream.close()
            self._stream = None
            raise
        self._reader = asyncio.create_task(self._listen(self._stream))

    async def _until_held(self, stream: Stream) -> None:
        async for kind, rest in self._lines(stream):
            if kind == "held":
                self._holder_pid = int(rest) if rest.isdigit() else None
                return
            if kind == "stale":
                self.notices.append(f"took over the lock of {_describe(rest)}: it went away without releasing it")
            elif kind == "cancelling":
                self.notices.append(f"asked {_describe(rest)} to stop")
            elif kind == "waited":
                self.notices.append(f"waited for {_describe(rest)} to finish")
            elif kind == "busy":
                raise DeploymentBusy(self.transport.node, rest)
            elif kind == "error":
                raise RemoteError(self.transport.node, f"cannot lock the deployment: {rest}")
        raise RemoteError(self.transport.node, "cannot lock the deployment: the node did not answer")

    async def _lines(self, stream: Stream) -> AsyncIterator[tuple[str, str]]:
        while data := await stream.read():
            self._pending += data
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                kind, _, rest = line.decode("utf-8", "replace").partition(" ")
                yield kind, rest

    async def _listen(self, stream: Stream) -> None:
        """Drain the holder's heartbeat (it ends when nobody reads), notice a cancel, and notice
        the heartbeat ending while the lock is held: the holder died with it."""
        with contextlib.suppress(RemoteError):
            async for kind, rest in self._lines(stream):
                if kind == "cancel" and not self.cancelled.is_set():
                    self.cancelled_by = rest or "another operator"
                    self.cancelled.set()
        self.lost.set()  # not cancelled by release(): the stream ended under us

    async def release(self) -> None:
        """Say the lock was released (so the next holder takes no crash for granted), end its
        holder on the node and return once the lock is free."""
        if self._stream is None:
            return
        if self._holder_pid is not None:
            with contextlib.suppress(RemoteError):
                await self.transport.run(scripts.release_lock(self.directory, self._holder_pid), timeout=10)
        await cancel_and_wait(self._reader)
        await self._stream.close()
        self._stream = None


def holder_for(who: str, verb: str) -> Holder:
    return Holder(who, os.getpid(), verb)
