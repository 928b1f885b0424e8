"""A node's chips: npu-smi (count, health, HBM in use, driver) and, all chips at once, each chip's
network port by hccn_tool (link, net health, address, TLS) and the chips' /etc/hccn.conf."""

from __future__ import annotations

import re
import shlex

from ..plan import NodePlan
from ..remote import RemoteError, Transport
from ..telemetry.npu_smi import NpuSmiInfo, ParseError, parse_info
from .batch import all_at_once, answers
from .facts import UNKNOWN, NodeFacts
from .npu_network import parse_hccn_conf
from .report import Check

HBM_BUSY_FRACTION = 0.10  # more than this in use before we start: another job holds the chip
IPADDR = re.compile(r"ipaddr:\s*(\S+)")  # hccn_tool -i N -ip -g
CONF_UNREADABLE = "@hccn.conf unreadable"  # printed when tools.hccn_conf fails
TLS_SWITCH = re.compile(r"tls switch\[(\d)\]")  # hccn_tool -i N -tls -g: "dev_id:0, tls switch[0](0:disable, …"


async def read_npu_ips(node: NodePlan, transport: Transport, timeout: float = 30.0) -> dict[int, str]:
    """Each chip's NPU IP (`hccn_tool -i N -ip -g`, all chips at once); chips without one left out."""
    tool = shlex.join(node.tool("hccn_tool"))
    result = await transport.run(all_at_once([f"{tool} -i {i} -ip -g" for i in range(node.chips)]), timeout=timeout)
    found = {chip: IPADDR.search(block) for chip, block in answers(result.text()).items()}
    return {chip: match.group(1) for chip, match in found.items() if match}


async def npu_checks(
    node: NodePlan, transport: Transport, facts: NodeFacts, ours: set[str], timeout: float
) -> list[Check]:
    """npu-smi (count, health, HBM in use, driver) and hccn_tool (link, net health, IP) per chip.
    HBM held while this profile's own processes run on the node (`ours`) is theirs, no conflict."""
    name = node.name
    out: list[Check] = []
    try:
        smi = await transport.run(node.tool("npu_smi", "info"), timeout=timeout)
        info = parse_info(smi.text()) if smi.ok else None
        problem = None if smi.ok else (smi.stderr or smi.stdout).decode("utf-8", "replace").strip()[:200]
    except (RemoteError, ParseError) as exc:
        info, problem = None, str(exc)
    if info is None:
        out.append(
            Check(name, "npu-smi", "FAIL", problem or "no output", "is the driver installed and npu-smi on PATH?")
        )
    else:
        facts.versions["driver"] = info.version or UNKNOWN
        facts.chip_names = {chip.name for chip in info.chips}
        count = len(info.chips)
        good = count == node.chips
        evidence = f"{count} chips, profile says {node.chips}"
        hint = "fix nodes.<name>.chips or the device mapping"
        out.append(Check.verdict(name, "chips", good, evidence, hint, same=f"{count} chips"))
        for chip in info.chips:
            ok = chip.health == "OK"
            where = chip.phy_id if chip.phy_id is not None else chip.npu_id
            hint = "see `npu-smi info -t health -i N -c C` and the device log"
            out.append(Check.verdict(name, "chip health", ok, chip.health, hint, chip=where))
        out.append(hbm_check(name, info, ours))

    # every chip's network port, all chips at once, and the chips' network configuration file
    tool = shlex.join(node.tool("hccn_tool"))
    script = all_at_once(
        [
            f"{tool} -i {i} -link -g; {tool} -i {i} -net_health -g; {tool} -i {i} -ip -g; {tool} -i {i} -tls -g"
            for i in range(node.chips)
        ]
        + [f"{shlex.join(node.tool('hccn_conf'))} || echo {CONF_UNREADABLE}"]
    )
    try:
        hccn = (await transport.run(script, timeout=timeout)).text()
    except RemoteError as exc:
        out.append(Check(name, "NPU link", "FAIL", exc.what, "is hccn_tool installed?"))
        return out
    blocks = answers(hccn)
    conf = blocks.get(node.chips, CONF_UNREADABLE)
    if CONF_UNREADABLE in conf:
        evidence = f"cannot read it: {conf.replace(CONF_UNREADABLE, '').strip()[:160] or 'no output'}"
        hint = "gateway and detect IP unchecked; set tools.hccn_conf to a command printing the node's /etc/hccn.conf"
        out.append(Check(name, "hccn.conf", "WARN", evidence, hint))
    else:
        facts.chip_conf = parse_hccn_conf(conf)
    for i in range(node.chips):
        block = blocks.get(i, "")
        link = re.search(r"link status: (\S+)", block)
        health = re.search(r"net health status: (\S+)", block)
        address = IPADDR.search(block)
        if tls := TLS_SWITCH.search(block):
            facts.tls[i] = tls.group(1) == "1"
        up = link is not None and link.group(1) == "UP"
        hint = "check the optics and cabling: hccn_tool -i N -link -g"
        out.append(Check.verdict(name, "NPU link", up, f"link {link.group(1) if link else 'unknown'}", hint, chip=i))
        fine = health is not None and health.group(1) == "Success"
        evidence = f"net health {health.group(1) if health else 'unknown'}"
        hint = "hccn_tool -i N -net_health -g; check the gateway and detect IP (-netdetect) in /etc/hccn.conf"
        out.append(Check.verdict(name, "NPU net health", fine, evidence, hint, chip=i))
        if address:
            facts.npu_ips[i] = address.group(1)
        evidence = f"ipaddr {address.group(1)}" if address else "no address"
        hint = "set it in /etc/hccn.conf (hccn_tool -i N -ip -s address …)"
        out.append(Check.verdict(name, "NPU address", address is not None, evidence, hint, chip=i, same="address set"))
    return out


def hbm_check(node: str, info: NpuSmiInfo, ours: set[str]) -> Check:
    busy = [c for c in info.chips if (c.hbm_fraction or 0) > HBM_BUSY_FRACTION]
    if busy and ours:  # as for ports: the profile's running processes hold their own chips
        running = ", ".join(sorted(ours))
        evidence = f"{len(busy)} chip(s) use HBM; not counted: {running} (running)"
        return Check(node, "HBM free", "PASS", evidence, same="free, but for the running processes' own")
    if busy:
        pids = ", ".join(str(p) for p in sorted({p.pid for p in info.processes})) or "?"
        evidence = f"{len(busy)} chip(s) already use HBM (pids {pids})"
        return Check(node, "HBM free", "WARN", evidence, "another job still runs on the chips: stop it first")
    return Check(node, "HBM free", "PASS", "no chip holds HBM", same="free")
