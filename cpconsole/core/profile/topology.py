"""What a profile implies but never says: ranks, headless nodes, engine ids, kv ports, listeners.

Both the rules and the launch plan read these, so each fact is derived in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .loader import Loc
from .schema import MAX_PARALLEL, Container, Instance, Node, Profile, Proxy

PortKind = Literal["http", "master", "dp_rpc", "kv", "hccl", "proxy"]
HCCL_BASE_PORT = 60000  # HCCL_IF_BASE_PORT's default; HCCL's host-side listeners take it and the next 15
HCCL_PORTS = 16


@dataclass(frozen=True)
class Parallel:
    tp: int = 1
    pcp: int = 1
    dcp: int = 1
    pp: int = 1
    dp: int = 1

    @property
    def world(self) -> int:
        """Ranks of the whole instance; DCP reuses the TP ranks and adds none."""
        return self.tp * self.pcp * self.pp * self.dp

    @property
    def ranks_per_dp(self) -> int:
        return self.tp * self.pcp * self.pp


PARALLEL_ARGS = {
    "tp": "tensor_parallel_size",
    "pcp": "prefill_context_parallel_size",
    "dcp": "decode_context_parallel_size",
    "pp": "pipeline_parallel_size",
}


def positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def parallel_size(value: object) -> int | None:
    """A usable parallel size: a positive int no larger than MAX_PARALLEL."""
    size = positive_int(value)
    return size if size is not None and size <= MAX_PARALLEL else None


def parallel_of(inst: Instance) -> Parallel:
    """Parallel sizes of an instance; a missing, malformed or impossibly large value counts as 1
    (rules report it)."""
    sizes = {short: parallel_size(inst.arg(flag)) or 1 for short, flag in PARALLEL_ARGS.items()}
    return Parallel(dp=inst.data_parallel.size if inst.data_parallel else 1, **sizes)


@dataclass(frozen=True)
class Placement:
    """One vLLM process: an instance's share of one node."""

    instance: str
    node: str
    node_rank: int
    nnodes: int
    headless: bool
    serves_http: bool
    engine_id: str
    dp_local: int
    dp_start_rank: int

    @property
    def process(self) -> str:
        return f"{self.instance}-{self.node_rank}"


def node_address(profile: Profile, node: str) -> str:
    spec = profile.nodes[node]
    return spec.address or spec.host


def owner_of(profile: Profile, owner: Loc) -> Instance | Proxy:
    """The instance at ("instances", name) or the proxy at ("proxy",)."""
    if owner[0] == "instances":
        return profile.instances[str(owner[1])]
    assert profile.proxy is not None
    return profile.proxy


def effective_container(profile: Profile, node: str, owner: Loc) -> tuple[Container, Loc] | None:
    """The container a process runs in, and the key that chose it: its own, its node's, or the default.

    An explicit `container: null` on a more specific level means "not in a container".
    """
    levels: tuple[tuple[Instance | Proxy | Node, Loc], ...] = (
        (owner_of(profile, owner), owner),
        (profile.nodes[node], ("nodes", node)),
    )
    for spec, path in levels:
        if "container" in spec.model_fields_set:
            return (spec.container, (*path, "container")) if spec.container is not None else None
    if profile.defaults.container is None:
        return None
    return profile.defaults.container, ("defaults", "container")


def declared_setup(profile: Profile, node: str, owner: Loc) -> tuple[str, ...] | None:
    """A process's setup lines: its own, else its node's, else the default's; None when no level
    sets them (the plan then gives the place's default)."""
    for spec in (owner_of(profile, owner), profile.nodes[node], profile.defaults):
        if spec.setup is not None:
            return spec.setup
    return None


def engine_ids(profile: Profile) -> dict[tuple[str, int], str]:
    """(instance, node rank) → engine id: the profile's own, else the next unused number."""
    taken = {eid for inst in profile.instances.values() for eid in (inst.engine_ids or ())}
    ids: dict[tuple[str, int], str] = {}
    counter = 0
    for name, inst in profile.instances.items():
        for rank in range(len(inst.nodes)):
            if inst.engine_ids is not None and rank < len(inst.engine_ids):
                ids[(name, rank)] = inst.engine_ids[rank]
                continue
            while str(counter) in taken:
                counter += 1
            ids[(name, rank)] = str(counter)
            taken.add(str(counter))
    return ids


def placements(profile: Profile) -> list[Placement]:
    ids = engine_ids(profile)
    out: list[Placement] = []
    for name, inst in profile.instances.items():
        nnodes = len(inst.nodes)
        dp = inst.data_parallel
        dp_local = max(1, dp.size // nnodes) if dp else 1
        for rank, node in enumerate(inst.nodes):
            hybrid = bool(dp and dp.hybrid_lb)
            out.append(
                Placement(
                    instance=name,
                    node=node,
                    node_rank=rank,
                    nnodes=nnodes,
                    headless=rank > 0 and not hybrid,
                    serves_http=rank == 0 or hybrid,
                    engine_id=ids[(name, rank)],
                    dp_local=dp_local,
                    dp_start_rank=rank * dp_local,
                )
            )
    return out


def kv_ports(inst: Instance, node_rank: int) -> list[int]:
    """The Mooncake handshake listeners of one node, ascending.

    Worker port = kv_port + dp_rank·tp·pp·pcp + (pp_rank + pcp_rank)·tp + tp_rank, with global
    ranks laid out as (dp, pp, pcp, tp), TP innermost; a node holds a contiguous block of ranks.
    """
    if inst.kv_port is None:
        return []
    par = parallel_of(inst)
    per_node = max(1, par.world // len(inst.nodes))
    if per_node > MAX_PARALLEL:  # more ranks than any node has chips: the world-size rule says so
        return []
    ports = set()
    for rank in range(node_rank * per_node, (node_rank + 1) * per_node):
        tp_rank = rank % par.tp
        pcp_rank = (rank // par.tp) % par.pcp
        pp_rank = (rank // (par.tp * par.pcp)) % par.pp
        dp_rank = rank // par.ranks_per_dp
        ports.add(inst.kv_port + dp_rank * par.ranks_per_dp + (pp_rank + pcp_rank) * par.tp + tp_rank)
    return sorted(ports)


def as_ranges(ports: list[int]) -> list[tuple[int, int]]:
    """[30000, 30001, 30002, 30010] → [(30000, 30002), (30010, 30010)]."""
    ranges: list[tuple[int, int]] = []
    for port in sorted(ports):
        if ranges and port == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], port)
        else:
            ranges.append((port, port))
    return ranges


@dataclass(frozen=True)
class PortClaim:
    """A port range a process listens on, with the profile key that chose it."""

    process: str
    node: str
    address: str
    kind: PortKind
    start: int
    end: int
    path: Loc

    def overlaps(self, other: PortClaim) -> bool:
        return self.start <= other.end and other.start <= self.end

    def describe(self) -> str:
        span = str(self.start) if self.start == self.end else f"{self.start}-{self.end}"
        return f"{self.process} {self.kind} {span}"


def declared_env(profile: Profile, node: str, inst: Instance) -> dict[str, str]:
    """A process's environment as the profile writes it: defaults, then its node's, then its instance's."""
    return {**profile.defaults.env, **profile.nodes[node].env, **inst.env}


VISIBLE_ENV = "ASCEND_RT_VISIBLE_DEVICES"  # CANN: the chips a process sees, as a comma-separated list


def parse_visible(text: str) -> list[int] | None:
    """ASCEND_RT_VISIBLE_DEVICES as chip ids; None when it is not a comma-separated list of them."""
    words = [w.strip() for w in text.split(",")]
    return [int(w) for w in words] if all(w.isdigit() for w in words) else None


def instance_chips(profile: Profile, node: str, inst: Instance) -> list[int] | None:
    """The chips an instance's process uses on a node: those ASCEND_RT_VISIBLE_DEVICES names, else
    all of the node's; None when the variable is no list of chip ids (a rule says so)."""
    given = declared_env(profile, node, inst).get(VISIBLE_ENV)
    return parse_visible(given) if given is not None else list(range(profile.nodes[node].chips))


def hccl_ports(profile: Profile, node: str, inst: Instance) -> tuple[int, int] | None:
    """HCCL's host ports of a process on NPUs (CANN: HCCL_IF_BASE_PORT, 16 ports); None without NPUs
    or with a base that is no port (a rule says so)."""
    if not profile.nodes[node].chips:
        return None
    base = declared_env(profile, node, inst).get("HCCL_IF_BASE_PORT", str(HCCL_BASE_PORT))
    return (int(base), int(base) + HCCL_PORTS - 1) if base.isdigit() else None


def port_claims(profile: Profile) -> list[PortClaim]:
    claims: list[PortClaim] = []
    for place in placements(profile):
        inst = profile.instances[place.instance]
        address = node_address(profile, place.node)
        wanted: list[tuple[PortKind, int, int, Loc]] = []
        if place.serves_http:
            wanted.append(("http", inst.port, inst.port, ("port",)))
        if place.node_rank == 0 and place.nnodes > 1 and inst.data_parallel is None and inst.master_port:
            wanted.append(("master", inst.master_port, inst.master_port, ("master_port",)))
        if place.node_rank == 0 and inst.data_parallel and inst.data_parallel.rpc_port:
            rpc = inst.data_parallel.rpc_port
            wanted.append(("dp_rpc", rpc, rpc, ("data_parallel", "rpc_port")))
        if inst.kv_connector is not None:
            wanted += [("kv", start, end, ("kv_port",)) for start, end in as_ranges(kv_ports(inst, place.node_rank))]
        if hccl := hccl_ports(profile, place.node, inst):
            wanted.append(("hccl", *hccl, ("env", "HCCL_IF_BASE_PORT")))
        claims += [
            PortClaim(place.process, place.node, address, kind, start, end, ("instances", place.instance, *key))
            for kind, start, end, key in wanted
        ]
    if profile.proxy is not None and profile.proxy.node in profile.nodes:
        proxy = profile.proxy
        address = node_address(profile, proxy.node)
        claims.append(PortClaim("proxy", proxy.node, address, "proxy", proxy.port, proxy.port, ("proxy", "port")))
        if proxy.kind_of == "vllm-router":  # its Prometheus endpoint
            metrics = proxy.router_metrics_port
            claims.append(PortClaim("proxy", proxy.node, address, "proxy", metrics, metrics, ("proxy", "metrics_port")))
    return claims


def api_servers(profile: Profile, role: str) -> list[tuple[str, int]]:
    """(address, port) of every HTTP API server of instances with this role, in profile order."""
    return [
        (node_address(profile, p.node), profile.instances[p.instance].port)
        for p in placements(profile)
        if p.serves_http and profile.instances[p.instance].role == role
    ]
