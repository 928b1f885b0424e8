"""Values that cross the remote layer's boundary. All frozen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .manifest import Manifest  # which itself makes ProcessHandles


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


@dataclass(frozen=True)
class SpawnSpec:
    """What to start detached: the script, where its run directory is, and its manifest."""

    run_dir: str
    script: str
    manifest: Manifest
    log_cap: int | None = None  # bytes the log is kept under (scripts.wrapper); None: uncapped
    log_every: float = 10.0  # seconds between two looks at the log's size

    @property
    def name(self) -> str:
        return self.manifest.process


@dataclass(frozen=True)
class ProcessHandle:
    """A detached process, identified beyond its pid: a pid is only ours while its start time
    (clock ticks after boot, from /proc) and the boot id still match."""

    node: str
    name: str
    run_dir: str
    pid: int
    start_ticks: int
    boot_id: str
    container: str | None = None  # started with docker exec: signalled in there
    container_pidfile: str | None = None  # in the container: the group the process started
    container_cli: tuple[str, ...] = ("docker",)


ProcessState = Literal["running", "exited", "gone"]


@dataclass(frozen=True)
class ProcessStatus:
    """`running` while the process we started lives, or — its wrapper killed before the launch
    script ended — while anything of its group or session does. `leftovers` counts what lives on
    after the leader is gone; `stopped_by` is set when the end was asked for by a stop."""

    state: ProcessState
    exit_code: int | None = None
    detail: str = ""
    leftovers: int = 0
    stopped_by: str = ""

    @property
    def settled(self) -> bool:
        """Nothing of it runs any more."""
        return self.state != "running" and not self.leftovers


@dataclass(frozen=True)
class TailChunk:
    """Bytes of the followed file starting at `offset` of the file they came from."""

    offset: int
    data: bytes


TailEventKind = Literal["truncated", "rotated", "missing", "disconnected", "resumed"]


@dataclass(frozen=True)
class TailEvent:
    kind: TailEventKind
    detail: str = ""


TailItem = TailChunk | TailEvent
