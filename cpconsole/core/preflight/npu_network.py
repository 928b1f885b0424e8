"""The chips' network settings, which must agree across every chip that talks: the TLS switch
(`hccn_tool -tls -g`), and the address, gateway and detect IP each chip is configured with in
/etc/hccn.conf (`address_N`, `netmask_N`, `gateway_N`, `netdetect_N`, as the driver writes it)."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .report import Check

if TYPE_CHECKING:  # facts.py imports this module
    from ..plan import LaunchPlan
    from .facts import NodeFacts

CONF_LINE = re.compile(r"^\s*(address|netmask|gateway|netdetect)_(\d+)\s*=\s*(\S+)\s*$", re.M)


@dataclass(frozen=True)
class ChipConf:
    """One chip's lines of /etc/hccn.conf (absent keys are None)."""

    address: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    netdetect: str | None = None

    def outside(self, other: str) -> bool:
        """`other` is not in this chip's subnet (False when the subnet is unknown or malformed)."""
        try:
            net = ipaddress.IPv4Network(f"{self.address}/{self.netmask}", strict=False)
            return ipaddress.IPv4Address(other) not in net
        except ValueError:
            return False


def parse_hccn_conf(text: str) -> dict[int, ChipConf]:
    """Per chip id, its settings from /etc/hccn.conf; other keys (arp_N, send_arp_status_N…) ignored."""
    found: dict[int, dict[str, str]] = {}
    for key, chip, value in CONF_LINE.findall(text):
        found.setdefault(int(chip), {})[key] = value
    return {chip: ChipConf(**values) for chip, values in sorted(found.items())}


def ping_pairs(plan: LaunchPlan) -> list[tuple[str, str]]:
    """(from, to) node pairs whose NPUs talk: within a prefill instance, and prefill → decode."""
    roles: dict[str, set[str]] = {}
    instances: dict[str, list[str]] = {}
    for proc in plan.processes:
        roles.setdefault(proc.role, set()).add(proc.node)
        if proc.role == "prefill" and proc.instance:
            instances.setdefault(proc.instance, []).append(proc.node)
    pairs = [(a, b) for nodes in instances.values() for a in nodes for b in nodes if a < b]
    pairs += [(p, d) for p in sorted(roles.get("prefill", ())) for d in sorted(roles.get("decode", ())) if p != d]
    return list(dict.fromkeys(pairs))


def talking_nodes(plan: LaunchPlan) -> list[str]:
    """Nodes whose NPUs exchange data with another node's."""
    pairs = ping_pairs(plan)
    return [n.name for n in plan.nodes if any(n.name in pair for pair in pairs)]


def tls_checks(plan: LaunchPlan, facts: Mapping[str, NodeFacts]) -> list[Check]:
    """One TLS switch on every chip that talks (HCCL's EI0006 message asks for this check: a link
    between a chip with TLS and one without never comes up)."""
    talking = [n for n in talking_nodes(plan) if facts[n].tls]
    settings = {(node, chip): on for node in talking for chip, on in facts[node].tls.items()}
    if not settings:
        return []
    common = Counter(settings.values()).most_common(1)[0][0]

    def word(on: bool) -> str:
        return "enabled" if on else "disabled"

    out = []
    for node in talking:
        odd = sorted(chip for (where, chip), on in settings.items() if where == node and on != common)
        mine = sum(1 for where, _ in settings if where == node)
        evidence = (
            f"TLS {word(not common)} on chips {', '.join(map(str, odd))}, {word(common)} on the other chips that talk"
            if odd
            else f"TLS {word(common)} on its {mine} chips"
        )
        hint = "one TLS switch on every chip that talks: hccn_tool -i N -tls -s enable 0|1 on the odd ones"
        out.append(Check.verdict(node, "NPU TLS", not odd, evidence, hint, same=f"TLS {word(common)}"))
    return out


def conf_checks(plan: LaunchPlan, facts: Mapping[str, NodeFacts]) -> list[Check]:
    """Per chip that talks: the address in hccn.conf is the one the chip runs with, and the gateway
    and detect IP — where the cluster uses them (any talking chip has one) — are set and inside the
    chip's subnet (`net health` fails on a chip whose detect IP does not answer)."""
    talking = [n for n in talking_nodes(plan) if facts[n].chip_conf is not None]
    confs = {(node, chip): conf for node in talking for chip, conf in (facts[node].chip_conf or {}).items()}
    used = {key for key in ("gateway", "netdetect") if any(getattr(c, key) for c in confs.values())}
    out = []
    for node in talking:
        running = facts[node].npu_ips
        for chip in sorted(running):  # a chip without an address already fails "NPU address"
            conf = confs.get((node, chip), ChipConf())
            if conf.address not in (None, running[chip]):
                evidence = f"hccn.conf says {conf.address}, the chip runs with {running[chip]}"
                hint = "the file was edited but not applied, or the chip was set by hand: make them agree"
                out.append(Check(node, "NPU address", "WARN", evidence, hint, chip=chip))
            for key in sorted(used):
                out.append(_setting_check(node, chip, conf, key))
    return out


def _setting_check(node: str, chip: int, conf: ChipConf, key: str) -> Check:
    name = {"gateway": "NPU gateway", "netdetect": "NPU detect IP"}[key]
    value: str | None = getattr(conf, key)
    flag = {"gateway": "-gateway", "netdetect": "-netdetect"}[key]
    if value is None:
        evidence = f"no {key}_{chip} in /etc/hccn.conf (other chips that talk have one)"
        return Check(node, name, "FAIL", evidence, f"hccn_tool -i {chip} {flag} -s address …", chip=chip)
    if conf.outside(value):
        evidence = f"{key} {value} is outside the chip's subnet {conf.address}/{conf.netmask}"
        return Check(node, name, "FAIL", evidence, f"hccn_tool -i {chip} {flag} -s address <an IP in it>", chip=chip)
    return Check(node, name, "PASS", f"{key} {value}", chip=chip, same=f"{key} set, in the chip's subnet")
