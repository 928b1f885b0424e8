"""Semantic rules: what pydantic cannot see. Each message says how to fix the problem.

Facts behind the rules: ../shared/reference/vllm-ascend-facts.md (§0 versions, §1.2 CP constraints,
§1.3 kv_port and engine_id).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator

from ..names import did_you_mean
from .hits import Hit, arg_path
from .loader import Loc
from .schema import MAX_PARALLEL, ROUTER_KV_MODE, KvConnector, Profile, flag_name
from .serving_rules import (
    bench_concurrency,
    derived_env,
    engine_ready_timeout,
    every_env,
    flashcomm_needs_tensor_parallel,
    hccl_connect_timeout,
    instance_envs,
    keys_in_clear,
    open_door_proxy,
    request_lengths,
    scheduler_limits,
)
from .topology import (
    HCCL_PORTS,
    PARALLEL_ARGS,
    VISIBLE_ENV,
    as_ranges,
    declared_env,
    effective_container,
    instance_chips,
    kv_ports,
    owner_of,
    parallel_of,
    parallel_size,
    placements,
    port_claims,
    positive_int,
)
from .versions import at_least, version_key
from .vllm_arguments import vllm_arguments

Rule = Callable[[Profile], Iterator[Hit]]

# vllm serve flags cpconsole derives; writing them by hand would fight the derivation.
DERIVED_FLAGS = {
    "model": "model.path",
    "host": "instances.<name>.bind",
    "port": "instances.<name>.port",
    "served-model-name": "model.served_name",
    "nnodes": "the number of instances.<name>.nodes",
    "node-rank": "the node's position in instances.<name>.nodes",
    "headless": "the node's position in instances.<name>.nodes",
    "master-addr": "the first node of instances.<name>.nodes",
    "master-port": "instances.<name>.master_port",
    "kv-transfer-config": "instances.<name>.kv_connector, kv_port and engine_ids",
    "data-parallel-size": "instances.<name>.data_parallel.size",
    "data-parallel-size-local": "instances.<name>.data_parallel.size",
    "data-parallel-start-rank": "instances.<name>.data_parallel.size",
    "data-parallel-address": "the first node of instances.<name>.nodes",
    "data-parallel-rpc-port": "instances.<name>.data_parallel.rpc_port",
    "data-parallel-hybrid-lb": "instances.<name>.data_parallel.hybrid_lb",
}
POSITIVE_INT_ARGS = (*PARALLEL_ARGS.values(), "block_size", "cp_kv_cache_interleave_size", "max_model_len")
DEFAULT_BLOCK_SIZE = 128  # vllm-ascend's default KV block size
MOONCAKE_RANDOM_BASE = 20000  # AscendDirectTransport picks ports in [20000, 20000 + chips·1000)


# ---------------------------------------------------------------- versions


# ---------------------------------------------------------------- the rules


def references(profile: Profile) -> Iterator[Hit]:
    known = list(profile.nodes)
    for name, inst in profile.instances.items():
        seen: set[str] = set()
        for index, node in enumerate(inst.nodes):
            path: Loc = ("instances", name, "nodes", index)
            if node not in profile.nodes:
                yield "error", path, f"no node named '{node}' ({did_you_mean(node, known, 'nodes are')})"
            elif node in seen:
                yield "error", path, f"node '{node}' is listed twice; each node hosts one rank block"
            seen.add(node)
    if profile.proxy and profile.proxy.node not in profile.nodes:
        hint = did_you_mean(profile.proxy.node, known, "nodes are")
        yield "error", ("proxy", "node"), f"no node named '{profile.proxy.node}' ({hint})"


def parallel_bounds(profile: Profile) -> Iterator[Hit]:
    """Parallel sizes no cluster has: checked before any rule counts ranks."""
    for name, inst in profile.instances.items():
        for key in PARALLEL_ARGS.values():
            value = inst.arg(key)
            if positive_int(value) is not None and parallel_size(value) is None:
                yield (
                    "error",
                    arg_path(name, inst, key),
                    f"{key} {value} is over {MAX_PARALLEL} ranks; no cluster has that many",
                )


def derived_values(profile: Profile) -> Iterator[Hit]:
    for name, inst in profile.instances.items():
        for key in inst.vllm_args:
            instead = DERIVED_FLAGS.get(flag_name(key))
            if instead:
                yield (
                    "error",
                    ("instances", name, "vllm_args", key),
                    f"--{flag_name(key)} is derived by cpconsole; set {instead.replace('<name>', name)} instead",
                )
        for key in POSITIVE_INT_ARGS:
            value = inst.arg(key)
            if value is not None and positive_int(value) is None:
                yield "error", arg_path(name, inst, key), f"{key} must be a positive whole number, not {value!r}"
            elif key in PARALLEL_ARGS.values() and value is not None and parallel_size(value) is None:
                yield (
                    "error",
                    arg_path(name, inst, key),
                    f"{key} {value} is over {MAX_PARALLEL} ranks; no cluster has that many",
                )
        flags = [flag_name(k) for k in inst.vllm_args]
        for flag in {f for f in flags if flags.count(f) > 1}:
            spelt = [k for k in inst.vllm_args if flag_name(k) == flag]
            yield (
                "error",
                ("instances", name, "vllm_args", spelt[-1]),
                f"--{flag} is given twice ({' and '.join(spelt)})",
            )
        if inst.bind != "node":
            try:
                ipaddress.ip_address(inst.bind)
            except ValueError:
                yield "error", ("instances", name, "bind"), f"'{inst.bind}' is not an IP address; use one, or 'node'"


def context_parallel(profile: Profile) -> Iterator[Hit]:
    for name, inst in profile.instances.items():
        par = parallel_of(inst)
        if par.dcp > par.tp or par.tp % par.dcp:
            choices = [d for d in range(1, par.tp + 1) if par.tp % d == 0]
            listed = ", ".join(map(str, choices[:-1])) + (" or " if len(choices) > 1 else "") + str(choices[-1])
            yield (
                "error",
                arg_path(name, inst, "decode_context_parallel_size"),
                f"{par.dcp} does not divide tensor_parallel_size {par.tp} (choose {listed})",
            )
        if inst.kv_connector is not None and par.pcp * par.dcp > 1:
            block = positive_int(inst.arg("block_size")) or DEFAULT_BLOCK_SIZE
            interleave = positive_int(inst.arg("cp_kv_cache_interleave_size")) or 1
            if interleave != block:
                where = arg_path(name, inst, "cp_kv_cache_interleave_size")
                yield (
                    "error",
                    where,
                    f"cp_kv_cache_interleave_size {interleave} must equal block_size {block} when context "
                    f"parallel (pcp·dcp = {par.pcp * par.dcp}) is used with a kv connector; "
                    f"set cp_kv_cache_interleave_size: {block}",
                )


def world_size(profile: Profile) -> Iterator[Hit]:
    for name, inst in profile.instances.items():
        nodes = [n for n in inst.nodes if n in profile.nodes]
        if len(nodes) != len(inst.nodes):
            continue  # reported by references()
        seen = [instance_chips(profile, n, inst) for n in nodes]
        if any(c is None for c in seen):
            continue  # reported by shared_chips()
        chips = [len(c or ()) for c in seen]
        par = parallel_of(inst)
        if len(set(chips)) > 1:
            listing = ", ".join(f"{n}={c}" for n, c in zip(nodes, chips, strict=True))
            yield "error", ("instances", name, "nodes"), f"nodes of one instance need the same chip count ({listing})"
            continue
        total = sum(chips)
        if total and par.world != total:  # chips: 0 nodes (CPU) run any world size
            formula = f"tp {par.tp} × pcp {par.pcp} × pp {par.pp} × dp {par.dp} = {par.world}"
            yield (
                "error",
                ("instances", name, "nodes"),
                f"world size {formula} ranks, but its {len(nodes)} node(s) give it {total} chips; "
                f"change the parallel sizes, the nodes or {VISIBLE_ENV} so both are equal",
            )
            continue
        dp = inst.data_parallel
        # with the world size right, an even split also keeps every DP rank on one node
        if dp and dp.size % len(nodes):
            yield (
                "error",
                ("instances", name, "data_parallel", "size"),
                f"{dp.size} data-parallel ranks cannot be split evenly over {len(nodes)} nodes",
            )
        if len(nodes) > 1 and dp is None and inst.master_port is None:
            yield (
                "error",
                ("instances", name),
                f"spans {len(nodes)} nodes, so it needs master_port (torch.distributed on the first node)",
            )


def shared_chips(profile: Profile) -> Iterator[Hit]:
    """Instances may share a node (two decode instances on one 16-chip node) when each sees chips of
    its own through ASCEND_RT_VISIBLE_DEVICES; the ids must be the node's, and no chip two
    instances'."""
    users: dict[str, dict[int, str]] = {}
    for name, inst in profile.instances.items():
        for node in (n for n in inst.nodes if n in profile.nodes):
            path: Loc = (
                ("instances", name, "env", VISIBLE_ENV) if VISIBLE_ENV in inst.env else ("instances", name, "nodes")
            )
            chips = instance_chips(profile, node, inst)
            if chips is None:
                yield "error", path, f'{VISIBLE_ENV} must list chip ids separated by commas, e.g. "0,1,2,3"'
                continue
            count = profile.nodes[node].chips
            beyond = [c for c in chips if c >= count]
            if beyond:
                yield "error", path, f"{VISIBLE_ENV} names chip {beyond[0]}, but {node} has chips 0-{count - 1}"
                continue
            taken = users.setdefault(node, {})
            clash = sorted({taken[c] for c in chips if c in taken})
            if clash:
                both = [c for c in chips if c in taken]
                yield (
                    "error",
                    path,
                    f"{name} and {clash[0]} both use chip(s) {', '.join(map(str, both[:4]))} of {node}: give each "
                    f"instance on a shared node chips of its own with {VISIBLE_ENV}",
                )
                continue
            taken.update(dict.fromkeys(chips, name))


def engine_id_rules(profile: Profile) -> Iterator[Hit]:
    owners: dict[str, str] = {}
    for name, inst in profile.instances.items():
        if inst.engine_ids is None:
            continue
        if len(inst.engine_ids) != len(inst.nodes):
            yield (
                "error",
                ("instances", name, "engine_ids"),
                f"{len(inst.engine_ids)} engine id(s) for {len(inst.nodes)} node(s); give one per node",
            )
        for index, eid in enumerate(inst.engine_ids):
            path: Loc = ("instances", name, "engine_ids", index)
            if eid in owners:
                yield "error", path, f"engine id '{eid}' is already used by {owners[eid]}; engine ids must be unique"
            owners.setdefault(eid, f"instances.{name}")
        if at_least(profile.versions.vllm_ascend, "0.21.0rc1"):
            yield (
                "info",
                ("instances", name, "engine_ids"),
                "vllm-ascend ≥ 0.21 generates engine ids itself; these explicit ids still apply",
            )


def kv_connector_rules(profile: Profile) -> Iterator[Hit]:
    roles = {inst.role for inst in profile.instances.values()}
    for name, inst in profile.instances.items():
        conn = inst.kv_connector
        if conn is None:
            if inst.role != "colocated" and {"prefill", "decode"} <= roles:
                yield (
                    "warning",
                    ("instances", name),
                    "prefill and decode instances hand KV over through a kv_connector; this one has none",
                )
            continue
        if conn.name.startswith("Mooncake") and inst.kv_port is None:
            yield "error", ("instances", name, "kv_connector"), f"{conn.name} needs kv_port (e.g. kv_port: 36000)"
        yield from _kv_params(profile, name, inst.role, conn)
    for role in ("prefill", "decode"):
        shapes = {
            (parallel_of(i).dp, parallel_of(i).tp)
            for i in profile.instances.values()
            if i.role == role and i.kv_connector and i.kv_connector.topology
        }
        if len(shapes) > 1:
            yield (
                "error",
                ("instances",),
                f"{role} instances differ in (dp_size, tp_size) {sorted(shapes)}; the kv connector's "
                f"'{role}' block can describe only one shape",
            )


ASCEND_DIRECT = "use_ascend_direct"
ASCEND_DIRECT_GONE = "0.12.0rc1"  # vllm-ascend#4547: the Mooncake connector reads it no more, always ADXL


def ascend_direct(profile: Profile) -> Iterator[Hit]:
    """The guide sets use_ascend_direct on its prefill only. vllm-ascend's MooncakeConnectorV1 read
    it with a default of true (mooncake_connector.py before #4547: true → the ADXL engine, false →
    Mooncake's HCCL transport on `host:0:npu_N`), and reads it no more since 0.12.0rc1 (#4547). So
    the asymmetry changes nothing; what breaks a transfer is `false` on one side only, before then."""
    keyed = {
        name: inst.kv_connector.extra.get(ASCEND_DIRECT, True)
        for name, inst in profile.instances.items()
        if inst.kv_connector is not None and inst.kv_connector.name.startswith("Mooncake")
    }
    given = [
        n for n, inst in profile.instances.items() if inst.kv_connector and ASCEND_DIRECT in inst.kv_connector.extra
    ]
    if at_least(profile.versions.vllm_ascend, ASCEND_DIRECT_GONE):
        for name in given:
            yield (
                "info",
                ("instances", name, "kv_connector", "extra", ASCEND_DIRECT),
                f"vllm-ascend {profile.versions.vllm_ascend} does not read {ASCEND_DIRECT} (since "
                f"{ASCEND_DIRECT_GONE}, vllm-ascend#4547: always the ADXL engine); it changes nothing here",
            )
    elif len({value is True for value in keyed.values()}) > 1:
        off = sorted(n for n, value in keyed.items() if value is not True)
        yield (
            "warning",
            ("instances", off[0], "kv_connector", "extra", ASCEND_DIRECT),
            f"{ASCEND_DIRECT} is not true on {', '.join(off)} but true (its default) on the others: the two sides "
            "would use different transfer engines (ADXL and HCCL) and no KV would pass; use one value everywhere",
        )


# hand the KV over through storage and answer the prefill without kv_transfer_params: vLLM's
# KVConnectorBase_V1.request_finished returns (False, None) unless a connector overrides it, and
# these do not (vllm/distributed/kv_transfer/kv_connector/v1/example_connector.py)
CONNECTORS_WITHOUT_KV_PARAMS = ("ExampleConnector", "SharedStorageConnector")


def _kv_params(profile: Profile, name: str, role: str, conn: KvConnector) -> Iterator[Hit]:
    """cpconsole's proxy refuses a prefill answer without kv_transfer_params unless told the
    connector sends none (kv_params: false adds --kv-params optional, which only it knows)."""
    if profile.proxy is None or role != "prefill":
        return
    if conn.name in CONNECTORS_WITHOUT_KV_PARAMS and conn.kv_params:
        yield (
            "error",
            ("instances", name, "kv_connector", "name"),
            f"{conn.name} answers the prefill without kv_transfer_params: the proxy would refuse every request "
            "(502); set kv_params: false in this kv_connector",
        )
    # vllm-router hands the decode whatever the prefill returned, none included (its nixl mode, seen
    # on the CPU tier with ExampleConnector); the example proxy reads the prefill's kv_transfer_params
    if not conn.kv_params and profile.proxy.kind_of == "vllm-ascend-example":
        yield (
            "error",
            ("proxy", "command"),
            f"instances.{name} sets kv_params: false, which the example proxy cannot serve: use cpconsole's "
            "proxy (its --kv-params optional; command: [python3, -m, cpconsole.proxy]) or kind: vllm-router",
        )


def unique_ports(profile: Profile) -> Iterator[Hit]:
    claims = port_claims(profile)
    for index, claim in enumerate(claims):
        for earlier in claims[:index]:
            if earlier.address == claim.address and earlier.overlaps(claim):
                yield (
                    "error",
                    claim.path,
                    f"on {claim.address}, {claim.describe()} collides with {earlier.describe()}; "
                    f"every listener on a host needs its own port",
                )
                break


def kv_port_range(profile: Profile) -> Iterator[Hit]:
    """Every kv listener a node derives from kv_port must be a port (vLLM would fail to bind it)."""
    for place in placements(profile):
        ports = kv_ports(profile.instances[place.instance], place.node_rank)
        if ports and ports[-1] > 65535:
            yield (
                "error",
                ("instances", place.instance, "kv_port"),
                f"{place.process} would listen on {ports[0]}-{ports[-1]}, past the last port 65535; "
                f"use kv_port ≤ {65535 - (ports[-1] - ports[0])}",
            )


def hccl_base_port(profile: Profile) -> Iterator[Hit]:
    """HCCL_IF_BASE_PORT must leave room for HCCL's 16 host ports (CANN's environment variable
    reference: the listeners take the base and the next 15)."""
    seen = set()
    for place in placements(profile):
        inst = profile.instances[place.instance]
        base = declared_env(profile, place.node, inst).get("HCCL_IF_BASE_PORT")
        if base is None:
            continue
        if "HCCL_IF_BASE_PORT" in inst.env:
            loc: Loc = ("instances", place.instance, "env", "HCCL_IF_BASE_PORT")
        elif "HCCL_IF_BASE_PORT" in profile.nodes[place.node].env:
            loc = ("nodes", place.node, "env", "HCCL_IF_BASE_PORT")
        else:
            loc = ("defaults", "env", "HCCL_IF_BASE_PORT")
        last = 65535 - (HCCL_PORTS - 1)
        if loc not in seen and not (base.isdigit() and 1024 <= int(base) <= last):
            seen.add(loc)
            yield "error", loc, f"HCCL_IF_BASE_PORT {base!r}: HCCL listens on it and the next 15; use 1024–{last}"


def mooncake_port_range(profile: Profile) -> Iterator[Hit]:
    for place in placements(profile):
        inst = profile.instances[place.instance]
        if (
            place.node not in profile.nodes
            or not inst.kv_connector
            or not inst.kv_connector.name.startswith("Mooncake")
        ):
            continue
        chips = profile.nodes[place.node].chips
        end = MOONCAKE_RANDOM_BASE + chips * 1000 - 1
        for start, stop in as_ranges(kv_ports(inst, place.node_rank)):
            if start <= end and stop >= MOONCAKE_RANDOM_BASE:
                yield (
                    "warning",
                    ("instances", place.instance, "kv_port"),
                    f"{place.process} listens on {start}-{stop}, inside Mooncake's random port range "
                    f"{MOONCAKE_RANDOM_BASE}-{end} for {chips} chips: intermittent 'ZMQError: Address already "
                    f"in use'; use kv_port ≥ {end + 1}",
                )
                break


def version_rules(profile: Profile) -> Iterator[Hit]:
    ascend = profile.versions.vllm_ascend
    for label, value in (("vllm", profile.versions.vllm), ("vllm_ascend", ascend)):
        if value is not None and version_key(value) is None:
            yield "warning", ("versions", label), f"cannot read version '{value}'; version rules are skipped"
    for name, inst in profile.instances.items():
        par = parallel_of(inst)
        pcp_path = arg_path(name, inst, "prefill_context_parallel_size")
        if par.pcp > 1 and at_least(ascend, "0.25.1rc1"):
            yield (
                "error",
                pcp_path,
                f"vllm-ascend {ascend} rejects prefill_context_parallel_size > 1 (from 0.25.1rc1); "
                "use vllm-ascend ≤ 0.23 or set it to 1",
            )
        elif par.pcp > 1 and par.dp > 1 and at_least(ascend, "0.22.1rc1"):
            yield (
                "error",
                pcp_path,
                f"vllm-ascend {ascend} rejects PCP together with data parallel > 1 (from 0.22.1rc1)",
            )
    if ascend is not None and version_key(ascend) is not None and not at_least(ascend, "0.21.0rc1"):
        yield from _context_parallel_switch(profile, ascend)
    if at_least(ascend, "0.21.0rc1"):
        for path, env in every_env(profile):
            if "VLLM_ASCEND_ENABLE_CONTEXT_PARALLEL" in env:
                yield (
                    "warning",
                    (*path, "VLLM_ASCEND_ENABLE_CONTEXT_PARALLEL"),
                    f"removed in vllm-ascend 0.21.0rc1; it has no effect on {ascend}, drop it",
                )


def _context_parallel_switch(profile: Profile, ascend: str) -> Iterator[Hit]:
    """Below vllm-ascend 0.21.0rc1, VLLM_ASCEND_ENABLE_CONTEXT_PARALLEL=1 "is required in the PD
    architecture" (the guide's own words; vllm-ascend envs.py until 0.21.0rc1 removed it)."""
    pd = {"prefill", "decode"} <= {inst.role for inst in profile.instances.values()}
    for name, inst in profile.instances.items():
        par = parallel_of(inst)
        if not pd or inst.role == "colocated" or (par.pcp == 1 and par.dcp == 1):
            continue
        if not any(env.get("VLLM_ASCEND_ENABLE_CONTEXT_PARALLEL") == "1" for env in instance_envs(profile, inst)):
            yield (
                "error",
                ("instances", name, "env"),
                f"instances.{name} runs context parallel in a PD deployment on vllm-ascend {ascend}: it needs "
                'VLLM_ASCEND_ENABLE_CONTEXT_PARALLEL: "1" in its env (required below 0.21.0rc1)',
            )


def container_devices(profile: Profile) -> Iterator[Hit]:
    made_with_devices: set[tuple[str | int, ...]] = set()
    for place in placements(profile):
        if place.node not in profile.nodes:
            continue
        found = effective_container(profile, place.node, ("instances", place.instance))
        if found is None or found[0].devices is None:
            continue
        container, path = found
        if container.image:
            if path in made_with_devices:
                continue
            made_with_devices.add(path)
            yield (
                "warning",
                (*path, "devices"),
                f"container '{container.name}' is made from its image with every chip of the node mapped: "
                "its devices are not used; remove them (they only describe a container made by hand)",
            )
            continue
        chips = profile.nodes[place.node].chips
        mapped = container.devices or ()
        missing = [f"/dev/davinci{i}" for i in range(chips) if f"/dev/davinci{i}" not in mapped]
        if missing:
            yield (
                "warning",
                (*path, "devices"),
                f"container '{container.name}' on {place.node} ({chips} chips) does not map {_span(missing)}; "
                f"map /dev/davinci0 … /dev/davinci{chips - 1}",
            )


def container_cwd(profile: Profile) -> Iterator[Hit]:
    """A process in a container starts through `docker exec --workdir`, which takes an absolute
    directory only (the OCI runtime spec's cwd; runc: "Cwd must be an absolute path")."""
    owners: list[tuple[Loc, str]] = [(("instances", name), inst.nodes[0]) for name, inst in profile.instances.items()]
    if profile.proxy is not None:
        owners.append((("proxy",), profile.proxy.node))
    for owner, node in owners:
        spec = owner_of(profile, owner)
        if spec.cwd is None or spec.cwd.startswith("/") or node not in profile.nodes:
            continue
        if effective_container(profile, node, owner) is not None:
            yield (
                "error",
                (*owner, "cwd"),
                f"cwd {spec.cwd!r} is relative, and docker exec takes an absolute working directory only; "
                "give the path inside the container (the vllm-ascend images keep the repository at "
                "/vllm-workspace/vllm-ascend)",
            )


def _span(devices: list[str]) -> str:
    return devices[0] if len(devices) == 1 else f"{devices[0]} … {devices[-1]} ({len(devices)} devices)"


def proxy_rules(profile: Profile) -> Iterator[Hit]:
    if profile.proxy is None:
        return
    roles = {inst.role for inst in profile.instances.values()}
    if not {"prefill", "decode"} <= roles:
        yield "error", ("proxy",), "the PD proxy needs at least one prefill and one decode instance"
    if profile.proxy.kind_of == "vllm-router":
        yield from router_rules(profile)


def router_rules(profile: Profile) -> Iterator[Hit]:
    """What vllm-router (0.1.17) cannot serve here, with the reason."""
    proxy = profile.proxy
    assert proxy is not None
    if profile.api_key:
        yield (
            "error",
            ("proxy", "kind"),
            "vllm-router takes the servers' API key only on its command line (--api-key), which every user of "
            "its node reads in ps: run the router without api_key, or use cpconsole's proxy (kind: cpconsole)",
        )
    for key, value in proxy.args.items():
        if key.replace("_", "-") == "kv-connector" and value != ROUTER_KV_MODE:
            yield (
                "error",
                ("proxy", "args", key),
                f"vllm-router's {value} mode is not what vllm-ascend's connectors speak: its mooncake mode asks a "
                "bootstrap server on each prefill node (upstream vLLM's Mooncake protocol), while vllm-ascend's "
                f"MooncakeConnectorV1 hands kv_transfer_params over as NIXL does; cpconsole sets --kv-connector "
                f"{ROUTER_KV_MODE}: leave it out",
            )


def ssh_rules(profile: Profile) -> Iterator[Hit]:
    if not profile.defaults.ssh.verify_host_keys:
        yield "warning", ("defaults", "ssh", "verify_host_keys"), "SSH host keys are NOT verified for any node"
    for name, node in profile.nodes.items():
        if node.ssh and not node.ssh.verify_host_keys:
            yield "warning", ("nodes", name, "ssh", "verify_host_keys"), f"SSH host keys of {name} are NOT verified"


# references first: later rules assume instance nodes exist; then sizes every rank count can use
RULES: tuple[Rule, ...] = (
    references,
    parallel_bounds,
    derived_values,
    context_parallel,
    world_size,
    shared_chips,
    engine_id_rules,
    kv_connector_rules,
    ascend_direct,
    unique_ports,
    kv_port_range,
    hccl_base_port,
    mooncake_port_range,
    version_rules,
    derived_env,
    keys_in_clear,
    open_door_proxy,
    request_lengths,
    scheduler_limits,
    flashcomm_needs_tensor_parallel,
    hccl_connect_timeout,
    engine_ready_timeout,
    bench_concurrency,
    vllm_arguments,
    container_devices,
    container_cwd,
    proxy_rules,
    ssh_rules,
)


def check(profile: Profile) -> list[Hit]:
    hits: list[Hit] = []
    for rule in RULES:
        hits.extend(rule(profile))
        if rule in (references, parallel_bounds) and any(h[0] == "error" for h in hits):
            break  # the rest would trip over the missing nodes or count impossible ranks
    return hits
