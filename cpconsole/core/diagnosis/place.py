"""Where a failure is: what a log line says of its place (a rank, a chip, a worker, a peer address),
then the same in the profile's terms — which node, which chip on it, which node the peer is."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..plan import LaunchPlan, ProcessPlan


@dataclass(frozen=True)
class LinePlace:
    """What one line names; None where it says nothing."""

    rank: int | None = None
    device: int | None = None
    dp: int | None = None  # a worker's data-parallel rank (Worker_DP1_TP14)
    tp: int | None = None  # its tensor-parallel rank
    peer: str | None = None  # an address the line names: ip or ip:port
    peer_rank: int | None = None


_RANK = re.compile(r"\brank\[(\d+)\]|\[rank(\d+)\]:|\[Rank (\d+)\]|RankID:(\d+)|\(VllmWorker rank=(\d+)")
_DEVICE = re.compile(r"\(NPU (\d+);|\bDevice:(\d+)|chipId:(\d+)|\bdevice\[(\d+)\]")
_WORKER = re.compile(r"\bWorker_(?:DP(\d+)_)?TP(\d+)|\bWorker_DP(\d+)|VllmWorker TP(\d+)")
# LINK_ERROR_INFO rows: | dest_ip(user_rank) | dest_port | src_ip(user_rank) | …
_LINK_ROW = re.compile(r"\|\s*([\d.]+)\((\d+)\)\s*\|\s*(\d+)\s*\|\s*[\d.]+\((\d+)\)\s*\|")
_PEERS = (
    re.compile(r"dst_rank\[(?P<peer_rank>\d+)\]-remoteUserrank\[\d+\]-remote_ip_addr\[(?P<ip>[^\]]+)\]"),
    re.compile(r"\[(?P<ip>\d+\.\d+\.\d+\.\d+)\]:(?P<port>\d+)"),
    re.compile(r"connect to \((?P<ip>[\w.:-]+), (?P<port>\d+)\)"),
    re.compile(r"addr='tcp://(?P<ip>[^':]+):(?P<port>\d+)'"),
    re.compile(r"(?:target|to|segment): (?P<ip>\d+(?:\.\d+){1,3}):(?P<port>\d+)"),
    re.compile(r"listen on ip\[(?P<ip>[^\]]+)\] and specific port\[(?P<port>\d+)\]"),
    re.compile(r"bind on address \('(?P<ip>[^']*)', (?P<port>\d+)\)"),
)


def _first(match: re.Match[str] | None) -> int | None:
    if match is None:
        return None
    value = next(group for group in match.groups() if group is not None)
    return int(value)


def read_place(line: str) -> LinePlace:
    """The place one line names."""
    rank = _first(_RANK.search(line))
    device = _first(_DEVICE.search(line))
    dp = tp = None
    if worker := _WORKER.search(line):
        dp_with_tp, tp_only, dp_only, vllm_tp = worker.groups()
        dp = int(dp_with_tp or dp_only) if (dp_with_tp or dp_only) else None
        tp = int(tp_only or vllm_tp) if (tp_only or vllm_tp) else None
    if row := _LINK_ROW.search(line):
        return LinePlace(int(row.group(4)), device, dp, tp, f"{row.group(1)}:{row.group(3)}", int(row.group(2)))
    for pattern in _PEERS:
        if found := pattern.search(line):
            parts = found.groupdict()
            peer = parts["ip"] + (f":{parts['port']}" if parts.get("port") else "")
            peer_rank = int(parts["peer_rank"]) if parts.get("peer_rank") else None
            return LinePlace(rank, device, dp, tp, peer, peer_rank)
    return LinePlace(rank, device, dp, tp)


@dataclass(frozen=True)
class Place:
    """A failure's place in the profile's terms."""

    node: str
    rank: int | None = None
    device: int | None = None  # the chip (NPU id) on that node
    peer: str | None = None  # the address the lines name (ip or ip:port)
    peer_rank: int | None = None
    peer_node: str | None = None  # the profile's node with that address, when it is one of them

    @property
    def peer_text(self) -> str:
        if not self.peer:
            return ""
        return f"{self.peer_node} ({self.peer})" if self.peer_node else self.peer

    def __str__(self) -> str:
        parts = [self.node]
        if self.rank is not None:
            parts.append(f"rank {self.rank}")
        if self.device is not None:
            parts.append(f"NPU {self.device}")
        if self.peer:
            parts.append(f"peer {self.peer_text}" + (f" (rank {self.peer_rank})" if self.peer_rank is not None else ""))
        return " · ".join(parts)


def locate(said: LinePlace, proc: ProcessPlan, plan: LaunchPlan) -> Place:
    """Map what the lines say to nodes and chips: a global rank of a multi-node instance lives on the
    node-rank holding it (ranks fill node-rank 0 first, world/nodes per node); a worker's TP rank is
    its local rank; a local rank is the n-th visible device (ASCEND_RT_VISIBLE_DEVICES)."""
    node, member = proc.node, proc
    local: int | None = None
    if said.rank is not None and proc.instance is not None:
        members = sorted((p for p in plan.processes if p.instance == proc.instance), key=lambda p: p.node_rank)
        tp = proc.int_flag("--tensor-parallel-size", "-tp") or 1
        pcp = proc.int_flag("--prefill-context-parallel-size", "-pcp") or 1
        per_node = max(1, tp * pcp // len(members))
        member = members[min(said.rank // per_node, len(members) - 1)]
        node, local = member.node, said.rank % per_node
    elif said.tp is not None:
        local = said.tp
    device = said.device
    if device is None and local is not None:
        visible = member.visible_devices
        device = visible[local] if local < len(visible) else local
    return Place(node, said.rank, device, said.peer, said.peer_rank, _node_at(said.peer, plan))


def _node_at(peer: str | None, plan: LaunchPlan) -> str | None:
    """The profile's node an address (ip or ip:port) belongs to, if any."""
    if not peer:
        return None
    address = peer.rsplit(":", 1)[0] if peer.count(":") == 1 else peer
    return next((node.name for node in plan.nodes if address in (node.address, node.host)), None)
