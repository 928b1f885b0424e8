"""All nodes at once, then what only the nodes together can tell: NPU pings between the nodes that
exchange data (the prefill nodes among themselves, every prefill node to every decode node), the
same software and the same weights everywhere."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shlex
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from ..plan import LaunchPlan, NodePlan
from ..profile.schema import Profile
from ..remote import RemoteError, Transport
from .batch import all_at_once, answers
from .facts import UNKNOWN, NodeFacts
from .installed import argument_checks, chip_checks, installed, version_checks
from .node import node_facts
from .npu_network import conf_checks, ping_pairs, tls_checks
from .report import ALL_NODES, Check, version_table
from .weights import HashProgress
from .weights import hash_weights as weights_sha256

SOFTWARE = ("vllm", "vllm-ascend", "torch-npu", "CANN", "driver")


async def _pings(
    source: NodePlan, targets: list[tuple[str, int, str]], transport: Transport, timeout: float
) -> list[Check]:
    """From each chip of `source` to (node, chip, NPU address): all at once, one block per ping."""
    tool = shlex.join(source.tool("hccn_tool"))
    script = all_at_once([f"{tool} -i {chip} -ping -g address {shlex.quote(ip)}" for _, chip, ip in targets])
    try:
        blocks = answers((await transport.run(script, timeout=timeout)).text())
    except RemoteError as exc:
        return [Check(source.name, "NPU ping", "FAIL", exc.what, chip=c, peer=f"{n} chip {c}") for n, c, _ in targets]
    out = []
    for n, (peer, chip, ip) in enumerate(targets):
        sent = re.search(r"(\d+) packets transmitted, (\d+) received, ([\d.]+)% packet loss", blocks.get(n, ""))
        ok = sent is not None and sent.group(2) != "0" and float(sent.group(3)) == 0
        evidence = f"{ip}: {sent.group(3)}% loss" if sent else f"{ip}: no answer ({blocks.get(n, '').strip()[:80]})"
        hint = "check the route between the NPU networks, the switch, and /etc/hccn.conf (hccn_tool -i N -ping -g address IP)"
        out.append(
            Check.verdict(
                source.name, "NPU ping", ok, evidence, hint, chip=chip, peer=f"{peer} chip {chip}", same="0% loss"
            )
        )
    return out


def _same_everywhere(check: str, values: Mapping[str, str | None], hint: str) -> list[Check]:
    """PASS on every node when all agree, else FAIL on each node apart from the most common value."""
    known = {node: value for node, value in values.items() if value is not None}
    if not known:
        return []
    common, _ = Counter(known.values()).most_common(1)[0]
    agree = len(set(known.values())) == 1
    told = hint + f" ({len(known)} nodes: " + ", ".join(f"{n} {v}" for n, v in known.items()) + ")"
    return [
        Check(node, check, "PASS" if agree or value == common else "FAIL", value, "" if agree else told)
        for node, value in known.items()
    ]


def _across(plan: LaunchPlan, facts: Mapping[str, NodeFacts]) -> list[Check]:
    out: list[Check] = tls_checks(plan, facts) + conf_checks(plan, facts)
    reporting = [n.name for n in plan.nodes if facts[n.name].versions]
    versions = {s: {n: facts[n].versions[s] for n in reporting if s in facts[n].versions} for s in SOFTWARE}
    for software, by_node in versions.items():
        for check in _same_everywhere(f"{software} version", by_node, "install the same version on every node"):
            missing = software == "vllm" and check.evidence == UNKNOWN
            if missing:
                check = Check(
                    check.node,
                    check.check,
                    "FAIL",
                    "not installed for the Python that runs vLLM",
                    "install vllm, or set tools.python to the interpreter that runs it",
                )
            out.append(check)
    if any(c.status == "FAIL" and c.check.endswith(" version") for c in out):
        table = version_table({s: v for s, v in versions.items() if v}, reporting)
        out.append(Check(ALL_NODES, "versions", "FAIL", "versions differ:\n" + table, "one release on every node"))
    weights = {n.name: facts[n.name].weights for n in plan.nodes if facts[n.name].weights is not None}
    out += [
        dataclasses.replace(c, same="every shard, same sizes" if c.status == "PASS" else "")
        for c in _same_everywhere("weights", weights, "copy the same weights to every node (rsync -a)")
    ]
    return out


async def run_preflight(
    plan: LaunchPlan,
    transports: Mapping[str, Transport],
    *,
    model_path: str | None,
    hash_weights: bool = False,
    hashed: Callable[[HashProgress], None] = lambda _: None,
    profile_warnings: Sequence[str] = (),
    profile: Profile | None = None,
    timeout: float = 20.0,
) -> list[Check]:
    """Every check on every node, all nodes at once; then pings and comparisons across nodes, and
    (given the profile) its version rules on what the nodes run. `hash_weights`: then every shard's
    sha256 on every node whose shards are all there (`hashed` hears the bytes read)."""
    found = await asyncio.gather(
        *(node_facts(plan, n, transports[n.name], model_path=model_path, timeout=timeout) for n in plan.nodes)
    )
    facts = {n.name: f for n, f in zip(plan.nodes, found, strict=True)}
    checks = [Check("profile", "profile", "WARN", warning) for warning in profile_warnings]
    checks += [c for f in found for c in f.checks]
    targets: dict[str, list[tuple[str, int, str]]] = {}
    for src, dst in ping_pairs(plan):
        if facts[src].reachable and facts[dst].reachable:
            shared = range(min(plan.node(src).chips, plan.node(dst).chips))
            targets.setdefault(src, []).extend(
                (dst, c, facts[dst].npu_ips[c]) for c in shared if c in facts[dst].npu_ips
            )
    pings = await asyncio.gather(*(_pings(plan.node(s), t, transports[s], timeout) for s, t in targets.items() if t))
    checks += [c for group in pings for c in group]
    checks += chip_checks(plan, facts) + argument_checks(plan, facts)
    if profile is not None:
        checks += version_checks(profile, installed(facts))
    shards = {name: f.shards for name, f in facts.items() if f.shards}
    if hash_weights and model_path and shards:
        servers = {p.node: p for p in reversed(plan.processes) if p.role != "proxy"}  # the node's first server
        checks += await weights_sha256(servers, transports, model_path, shards, hashed)
    return [_sudo_refused(c) for c in checks + _across(plan, facts)]


SUDO_REFUSED = "a password is required"  # what `sudo -n` says instead of prompting (sudo(8))


def _sudo_refused(check: Check) -> Check:
    """A tool run through sudo that wanted a password: the hint says what to change."""
    if check.status == "PASS" or SUDO_REFUSED not in check.evidence:
        return check
    hint = (
        "a tool in tools: runs through sudo, which cpconsole runs with -n (never waiting on a prompt): let the "
        "login user run that command without a password (sudoers NOPASSWD), or log in as a user that may"
    )
    return dataclasses.replace(check, hint=hint)
