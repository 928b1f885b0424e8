"""How cpconsole touches machines: one Transport per node (SSH or local), detached processes
with run directories on the node, gap-free tails, safe stops."""

from __future__ import annotations

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
from .ssh import SSHTransport
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


def transport_for(node: NodePlan) -> ShellTransport:
    return LocalTransport(node.name) if node.transport == "local" else SSHTransport(node)
