"""Preflight: find the environment problems that otherwise show up fifteen minutes into model
loading — an unreachable node, a missing or unhealthy chip, a DOWN NPU link, a taken port, a model
whose config.json still says float16 — in seconds, on all nodes at once, before anything starts."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .plan import LaunchPlan, NodePlan
from .remote import RemoteError, Transport
from .remote.scripts import shell_path
from .telemetry.npu_smi import ParseError, parse_info

Status = Literal["PASS", "WARN", "FAIL"]
CLOCK_SKEW_WARN_S = 1.0
HBM_BUSY_FRACTION = 0.10  # more than this in use before we start: another job holds the chip


@dataclass(frozen=True)
class Check:
    node: str
    check: str
    status: Status
    evidence: str
    hint: str = ""


WILDCARDS = {"0.0.0.0", "*", "::", "[::]"}


def _listening(ss_output: str, address: str) -> set[int]:
    """Ports in `ss -ltnH` output taken for `address`: bound to it or to every address."""
    ports = set()
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            host, _, port = fields[3].rpartition(":")
            host = host.split("%")[0]
            if port.isdigit() and (host in WILDCARDS or host.strip("[]") == address):
                ports.add(int(port))
    return ports


async def _npu_checks(node: NodePlan, transport: Transport, *, timeout: float) -> list[Check]:
    """npu-smi (count, health, HBM in use) and hccn_tool (link, net health, IP) for every chip."""
    out: list[Check] = []
    name = node.name
    # chips, their health, and HBM someone else already holds
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
        count = len(info.chips)
        out.append(Check(name, "chips", "PASS" if count == node.chips else "FAIL", f"{count} chips, profile says {node.chips}",
                         "" if count == node.chips else "fix nodes.<name>.chips or the device mapping"))  # fmt: skip
        sick = [f"{c.npu_id}/{c.chip_id} {c.health}" for c in info.chips if c.health != "OK"]
        out.append(Check(name, "chip health", "FAIL" if sick else "PASS", ", ".join(sick) or f"all {count} OK",
                         "check `npu-smi info -t health -i N -c C` and the device logs" if sick else ""))  # fmt: skip
        busy = [c for c in info.chips if (c.hbm_fraction or 0) > HBM_BUSY_FRACTION]
        pids = sorted({p.pid for p in info.processes})
        out.append(Check(name, "HBM free", "WARN" if busy else "PASS",
                         f"{len(busy)} chip(s) already use HBM (pids {', '.join(map(str, pids)) or '?'})" if busy
                         else "no chip holds HBM", "another job still runs: stop it first" if busy else ""))  # fmt: skip

    # NPU network ports: link, health, address of every chip, in one round trip
    tool = shlex.join(node.tool("hccn_tool"))
    loop = (f'for i in $(seq 0 {node.chips - 1}); do echo "chip $i"; {tool} -i "$i" -link -g; '
            f'{tool} -i "$i" -net_health -g; {tool} -i "$i" -ip -g; done 2>&1')  # fmt: skip
    try:
        hccn = (await transport.run(loop, timeout=timeout)).text()
        down = re.findall(r"chip (\d+)\nlink status: DOWN", hccn)
        faults = re.findall(r"chip (\d+)\n[^\n]*\nnet health status: (?!Success)(\S+)", hccn)
        no_ip = hccn.count("Get ipconf failed")
        ups = hccn.count("link status: UP")
        bad = bool(down or faults or no_ip) or ups != node.chips
        evidence = f"{ups}/{node.chips} links UP"
        if down:
            evidence += f"; DOWN: chip {', '.join(down)}"
        if faults:
            evidence += f"; net health: {', '.join(f'chip {c} {s}' for c, s in faults)}"
        if no_ip:
            evidence += f"; {no_ip} chip(s) without an IP"
        out.append(Check(name, "NPU network", "FAIL" if bad else "PASS", evidence,
                         "check optics/cabling and /etc/hccn.conf (hccn_tool -i N -link -g)" if bad else ""))  # fmt: skip
    except RemoteError as exc:
        out.append(Check(name, "NPU network", "FAIL", exc.what, "is hccn_tool installed?"))
    return out


async def _node_checks(
    plan: LaunchPlan, node: NodePlan, transport: Transport, *, model_path: str | None, timeout: float
) -> list[Check]:
    out: list[Check] = []
    name = node.name
    started = time.time()
    try:
        hello = await transport.run("id -un; date +%s.%N", timeout=timeout)
    except RemoteError as exc:
        return [Check(name, "reachable", "FAIL", exc.what, "check the address, ssh_config, keys and known_hosts")]
    latency = (time.time() - started) * 1000
    lines = hello.text().split()
    user = lines[0] if lines else "?"
    out.append(Check(name, "reachable", "PASS", f"logged in as {user} in {latency:.0f} ms"))
    try:
        skew = float(lines[1]) - (started + time.time()) / 2
        status: Status = "WARN" if abs(skew) > CLOCK_SKEW_WARN_S else "PASS"
        out.append(Check(name, "clock", status, f"{skew:+.2f} s against this machine",
                         "sync the clocks (chrony/ntp): log timestamps will not line up" if status == "WARN" else ""))  # fmt: skip
    except (IndexError, ValueError):
        out.append(Check(name, "clock", "WARN", "could not read the node's clock"))

    if node.chips:  # chips: 0 is a node without accelerators (a CPU test bed)
        out += await _npu_checks(node, transport, timeout=timeout)

    # ports this node's processes will listen on
    wanted = {
        (use.kind, proc.name, port)
        for proc in plan.processes if proc.node == name
        for use in proc.ports for port in range(use.start, use.end + 1)
    }  # fmt: skip
    try:
        listening = _listening((await transport.run("ss -ltnH", timeout=timeout)).text(), node.address)
        taken = sorted({(kind, proc, port) for kind, proc, port in wanted if port in listening}, key=lambda t: t[2])
        out.append(Check(name, "ports", "FAIL" if taken else "PASS",
                         ", ".join(f"{port} ({proc} {kind})" for kind, proc, port in taken[:8]) + (" already in use" if taken else "")
                         or f"{len(wanted)} port(s) free", "find the owner with `ss -ltnp`" if taken else ""))  # fmt: skip
    except RemoteError as exc:
        out.append(Check(name, "ports", "WARN", f"cannot list listening ports: {exc.what}"))

    if model_path is not None and any(p.node == name and p.role != "proxy" for p in plan.processes):
        config = f"{model_path.rstrip('/')}/config.json"
        result = await transport.run(f"cat {shell_path(config)}", timeout=timeout)
        if not result.ok:
            out.append(Check(name, "model", "FAIL", f"{config} is not readable", "model.path must exist on every node"))
        else:
            try:
                dtype = json.loads(result.stdout).get("torch_dtype")
            except ValueError:
                dtype = None
            good = dtype == "bfloat16"
            out.append(Check(name, "model", "PASS" if good else "FAIL", f"config.json torch_dtype {dtype}",
                             "" if good else "the guide: change torch_dtype from float16 to bfloat16 in config.json"))  # fmt: skip
    return out


async def run_preflight(
    plan: LaunchPlan, transports: Mapping[str, Transport], *, model_path: str | None, timeout: float = 20.0
) -> list[Check]:
    """Every check on every node, all nodes at once."""
    groups = await asyncio.gather(
        *(_node_checks(plan, n, transports[n.name], model_path=model_path, timeout=timeout) for n in plan.nodes)
    )
    return [check for group in groups for check in group]
