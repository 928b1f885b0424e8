"""The orchestrator's vocabulary: process states, the view of one process, and the events the
UI and CLI consume."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from ..diagnosis.explain import FailureCause
from ..remote.types import ProcessHandle
from .states import NOT_RUNNING, State, Trigger


@dataclass(frozen=True)
class ProcessView:
    name: str
    state: State = "planned"
    since: float = field(default_factory=time.time)
    reason: str = ""
    pid: int | None = None
    exit_code: int | None = None
    started_at: str | None = None
    progress: str = ""
    health_ms: float | None = None
    cause: FailureCause | None = None
    drift: tuple[str, ...] = ()
    last_line: str = ""
    leftovers: int = 0  # processes of its group still alive after its leader ended
    foreign: str = ""  # started by another profile (its run key) in this one's run directory

    @property
    def started_epoch(self) -> float | None:
        """started_at (its manifest's ISO 8601 time, with its offset) in seconds since the epoch."""
        try:
            when = datetime.fromisoformat(self.started_at) if self.started_at else None
        except ValueError:
            return None
        return None if when is None else (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()

    def uptime(self, now: float | None = None) -> str:
        """How long it has run, e.g. 0m07s, 12m or 2h05m; "-" when it does not run."""
        started = self.started_epoch
        if self.state in NOT_RUNNING or started is None:
            return "-"
        seconds = int(max(0.0, (now or time.time()) - started))
        # seconds only in the first minute (a fresh start): after that a board at rest stays still
        if seconds >= 3600:
            return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 60:
            return f"{seconds // 60}m"
        return f"{seconds // 60}m{seconds % 60:02d}s"

    @property
    def label(self) -> str:
        label: str = self.state
        if self.state == "exited":
            label = f"exited({self.exit_code if self.exit_code is not None else '?'})"
        return f"{label}+{self.leftovers}" if self.leftovers else label


def operator() -> str:
    """Who acts, as recorded on the nodes: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class StateChanged:
    process: str
    view: ProcessView
    previous: State
    trigger: Trigger  # what moved it: adoption's `found_*` only tells what was there already


@dataclass(frozen=True)
class RemovedProcess:
    """A process of this deployment still running whose instance the profile no longer has."""

    name: str
    node: str
    handle: ProcessHandle
    started_by: str = ""


@dataclass(frozen=True)
class ProgressNoted:
    process: str
    text: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class StageChanged:
    stage: str
    status: Literal["started", "passed", "failed"]
    detail: str = ""
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Notice:
    """Something an operator should read that is no state of a process (e.g. a lock taken over)."""

    text: str
    at: float = field(default_factory=time.time)


Event = StateChanged | ProgressNoted | StageChanged | Notice


class EventBus:
    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Event]] = []

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        with contextlib.suppress(ValueError):
            self._queues.remove(queue)

    def publish(self, event: Event) -> None:
        for queue in self._queues:
            queue.put_nowait(event)
