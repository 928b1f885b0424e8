"""Every rank of every instance: where it runs (node, chip, its kv port, the chip's NPU IP), what it
is in the parallel layout (TP rank, PCP rank, DCP group), and its state as the processes and their
logs tell it — a failure placed on a rank marks that rank, and a failed link marks both ends.

vLLM lays ranks out as DP × PP × PCP × TP with TP innermost, and carves DCP groups out of TP as
contiguous runs of DCP ranks (vllm/distributed/parallel_state.py, initialize_model_parallel); a
multi-node instance fills node-rank 0's chips first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from .diagnosis import Finding
from .orchestrate import ProcessView
from .plan import LaunchPlan, ProcessPlan


@dataclass(frozen=True)
class Rank:
    instance: str
    rank: int  # in the instance: DP rank × its world + rank in that world
    process: str
    node: str
    device: int  # the NPU id on the node
    dp: int
    tp: int
    pcp: int
    dcp_group: int  # which run of DCP ranks inside its TP group
    dcp: int  # DCP ranks in a group (1: no decode context parallelism)
    kv_port: int | None
    npu_ip: str | None = None
    state: str = "planned"  # planned / stopped / joining / loading / ready / failed / down
    note: str = ""  # the cause and its other end, for a rank a failure names

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)

    def cells(self) -> tuple[str, ...]:
        """As the CLI's and the console's tables show it (RANK_COLUMNS)."""
        return (
            str(self.rank),
            self.node,
            str(self.device),
            str(self.tp),
            str(self.pcp),
            str(self.dcp_group) if self.dcp > 1 else "-",
            str(self.kv_port) if self.kv_port is not None else "-",
            self.npu_ip or "-",
            self.state,
        )


RANK_COLUMNS = ("rank", "node", "NPU", "TP", "PCP", "DCP grp", "kv port", "NPU IP", "state")


def _sizes(proc: ProcessPlan) -> tuple[int, int, int, int, int]:
    """TP, PCP, DCP, DP engines here and the first DP rank here, from the process's argv."""
    tp = proc.int_flag("--tensor-parallel-size", "-tp") or 1
    pcp = proc.int_flag("--prefill-context-parallel-size", "-pcp") or 1
    dcp = proc.int_flag("--decode-context-parallel-size", "-dcp") or 1
    engines = proc.int_flag("--data-parallel-size-local", "-dpl") or 1
    first = proc.int_flag("--data-parallel-start-rank", "-dpr") or 0
    return tp, pcp, dcp, engines, first


def layout(plan: LaunchPlan) -> list[Rank]:
    """The ranks the plan starts, instance by instance, node-rank by node-rank."""
    ranks: list[Rank] = []
    instances = dict.fromkeys(p.instance for p in plan.processes if p.instance)
    for instance in instances:
        members = sorted((p for p in plan.processes if p.instance == instance), key=lambda p: p.node_rank)
        for proc in members:
            tp, pcp, dcp, engines, first = _sizes(proc)
            world = tp * pcp
            spread = len(members) if proc.int_flag("--nnodes", "-n") else 1  # one world over several nodes
            per_node = max(1, world // spread)
            visible = proc.visible_devices
            kv = next((port.start for port in proc.ports if port.kind == "kv"), None)
            for engine in range(engines):
                dp = first + engine
                for local in range(per_node):
                    in_world = (proc.node_rank if spread > 1 else 0) * per_node + local
                    slot = engine * per_node + local  # its chip among this process's
                    ranks.append(
                        Rank(
                            instance=instance,
                            rank=dp * world + in_world,
                            process=proc.name,
                            node=proc.node,
                            device=visible[slot] if slot < len(visible) else slot,
                            dp=dp,
                            tp=in_world % tp,
                            pcp=in_world // tp % pcp,
                            dcp_group=in_world % tp // max(1, dcp),
                            dcp=dcp,
                            kv_port=kv + slot if kv is not None else None,
                        )
                    )
    return ranks


_STATE_OF = {
    "planned": "planned",
    "stopped": "stopped",
    "exited": "down",
    "failed": "down",
    "starting": "loading",
    "waiting_for_peer": "joining",
    "ready": "ready",
    "stalled": "stalled",
    "drifted": "ready",
    "unknown": "unknown",
}


def rank_map(
    plan: LaunchPlan,
    views: Mapping[str, ProcessView],
    findings: Sequence[Finding] = (),
    npu_ips: Mapping[str, Mapping[int, str]] | None = None,
) -> list[Rank]:
    """The layout with each rank's state: its process's, unless a failure names the rank (a failed
    process's cause, a finding while serving), then failed with the cause; a link's other end too."""
    ranks = layout(plan)
    places = [(f.place, f.cause.summary) for f in findings]
    places += [(v.cause.where, v.cause.summary) for v in views.values() if v.cause and v.cause.where]
    named: dict[tuple[str, int], str] = {}  # (node, device) → what a failure says of that rank
    for place, summary in places:
        for rank in ranks:
            if _is(rank, place.node, place.device, place.rank):
                named.setdefault((rank.node, rank.device), summary + (f" ↔ {place.peer_text}" if place.peer else ""))
            elif place.peer_node and _is(rank, place.peer_node, None, place.peer_rank):
                named.setdefault((rank.node, rank.device), f"{summary} ↔ {place.node} rank {place.rank}")
    out = []
    for rank in ranks:
        view = views.get(rank.process)
        state = _STATE_OF.get(view.state, view.state) if view else "planned"
        note = named.get((rank.node, rank.device), "")
        if note:
            state = "failed"
        elif view is not None and view.cause is not None:
            note = f"its process: {view.cause.summary}"
        ip = (npu_ips or {}).get(rank.node, {}).get(rank.device)
        out.append(replace(rank, npu_ip=ip, state=state, note=note))
    return out


def _is(rank: Rank, node: str, device: int | None, number: int | None) -> bool:
    """Whether a failure's node and chip (or, without a chip, its rank number) are this rank's."""
    if node != rank.node:
        return False
    if device is not None:
        return device == rank.device
    return number is not None and number == rank.rank
