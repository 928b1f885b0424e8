"""How cpconsole touches machines: one Transport per node (SSH or local), detached processes
with run directories on the node, gap-free tails, safe stops."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plan import NodePlan
from . import scripts
from .base import ShellTransport, Transport
from .errors import (
    AlreadyRunning,
    CommandFailed,
    ConnectFailed,
    HostKeyError,
    RemoteError,
    RemoteTimeout,
    Unreachable,
)
from .local import LocalTransport
from .logstore import LogStore, follow
from .types import ProcessHandle, ProcessStatus, RunResult, SpawnSpec, TailChunk, TailEvent, TailItem

__all__ = [
    "AlreadyRunning",
    "CommandFailed",
    "ConnectFailed",
    "HostKeyError",
    "LocalTransport",
    "LogStore",
    "ProcessHandle",
    "ProcessStatus",
    "RemoteError",
    "RemoteTimeout",
    "RunResult",
    "SSHTransport",
    "ShellTransport",
    "SpawnSpec",
    "TailChunk",
    "TailEvent",
    "TailItem",
    "Transport",
    "Unreachable",
    "follow",
    "scripts",
    "transport_for",
]


if TYPE_CHECKING:
    from .ssh import SSHTransport


def __getattr__(name: str) -> object:
    """SSHTransport on first use: asyncssh (a tenth of a second to import) only when a node is SSH."""
    if name == "SSHTransport":
        from .ssh import SSHTransport

        return SSHTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def transport_for(node: NodePlan) -> ShellTransport:
    if node.transport == "local":
        return LocalTransport(node.name)
    from .ssh import SSHTransport

    return SSHTransport(node)
