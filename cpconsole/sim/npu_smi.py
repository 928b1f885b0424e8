"""A simulated `npu-smi` for an Atlas 800T A3 node (8 NPUs × 2 dies = 16 chips): `info` in the
exact table layout of the real tool (see tests/fixtures/npu-smi), and the `-t` key-value views.
HBM, AICore, power and temperature follow the sim processes on the node (nodestate).

Environment: CPCONSOLE_SIM_CHIPS (default 16), CPCONSOLE_SIM_NPU_HEALTH ("3=Warning,5=Alarm" by
physical chip id), CPCONSOLE_SIM_PROCESS_NAME (blank by default, as inside containers),
CPCONSOLE_SIM_NPU_SMI_DELAY_S (seconds each call takes), CPCONSOLE_SIM_CHIP_NAME (default
Ascend910, what A3 chips are called; e.g. 910B3 for an A2 node)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from . import nodestate

VERSION = "25.2.1"
HBM_TOTAL = 65536
HBM_BASE = 2870  # what an idle A3 die shows in use
WIDE = "+" + "-" * 96 + "+"
COLUMNS = "+" + "-" * 27 + "+" + "-" * 15 + "+" + "-" * 52 + "+"
DOUBLE = "+" + "=" * 27 + "+" + "=" * 15 + "+" + "=" * 52 + "+"
HEAD_1 = "| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|"
HEAD_2 = "| Chip  Phy-ID              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |"
PROC_HEAD = "| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |"


@dataclass(frozen=True)
class Chip:
    npu: int
    chip: int
    phy: int
    name: str
    health: str
    power: str  # "164.4", or "-" on the second die of an A3 NPU
    temp: int
    bus: str
    aicore: int
    hbm_used: int
    hbm_total: int = HBM_TOTAL
    hugepages: tuple[int, int] = (0, 0)
    memory: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Proc:
    npu: int
    chip: int
    pid: int
    name: str
    memory_mb: int


def render_info(chips: list[Chip], procs: list[Proc], version: str = VERSION) -> str:
    lines = [WIDE, f"| npu-smi {version:<25}Version: {version:<53}|", COLUMNS, HEAD_1, HEAD_2, DOUBLE]
    npus = sorted({c.npu for c in chips})
    for npu in npus:
        dies = [c for c in chips if c.npu == npu]
        for index, c in enumerate(dies):
            lines.append(
                f"| {c.npu:<6}{c.name:<20}| {c.health:<14}| {c.power:<12}{c.temp:<18}"
                f"{c.hugepages[0]:<5}/ {c.hugepages[1]:<14}|"
            )
            lines.append(
                f"| {c.chip:<6}{c.phy:<20}| {c.bus:<14}| {c.aicore:<12}{c.memory[0]:<5}/ {c.memory[1]:<11}"
                f"{c.hbm_used:<5}/ {c.hbm_total:<14}|"
            )
            lines.append(WIDE if index < len(dies) - 1 else DOUBLE)
    lines += [COLUMNS, PROC_HEAD, DOUBLE]
    for npu in npus:
        rows = [p for p in procs if p.npu == npu]
        if not rows:
            lines.append(f"| {'No running processes found in NPU ' + str(npu):<95}|")
        for p in rows:
            lines.append(f"| {p.npu:<8}{p.chip:<18}| {p.pid:<14}| {p.name:<25}| {p.memory_mb:<24}|")
        lines.append(DOUBLE)
    return "\n".join(lines) + "\n"


def _health_overrides() -> dict[int, str]:
    out = {}
    for item in os.environ.get("CPCONSOLE_SIM_NPU_HEALTH", "").split(","):
        phy, _, health = item.partition("=")
        if phy.strip().isdigit() and health.strip():
            out[int(phy)] = health.strip()
    return out


def node_view() -> tuple[list[Chip], list[Proc]]:
    count = int(os.environ.get("CPCONSOLE_SIM_CHIPS", "16") or 16)
    health = _health_overrides()
    procs_on: dict[int, list[tuple[int, int, float]]] = {}
    for entry in nodestate.processes():
        for phy in entry.get("chips", []):
            procs_on.setdefault(int(phy), []).append((int(entry["pid"]), int(entry["hbm_mb"]), float(entry["busy"])))
    chips, procs = [], []
    name = os.environ.get("CPCONSOLE_SIM_PROCESS_NAME", "")
    for phy in range(count):
        npu, die = divmod(phy, 2)
        users = procs_on.get(phy, [])
        busy = min(1.0, sum(b for _, _, b in users))
        used = min(HBM_TOTAL, HBM_BASE + sum(m for _, m, _ in users))
        chips.append(
            Chip(
                npu=npu,
                chip=die,
                phy=phy,
                name=os.environ.get("CPCONSOLE_SIM_CHIP_NAME") or "Ascend910",
                health=health.get(phy, "OK"),
                power=f"{95.0 + 85.0 * busy + phy * 0.3:.1f}" if die == 0 else "-",
                temp=int(38 + 16 * busy + (phy % 3)),
                bus=f"0000:{0x9D - 4 * npu - (0 if die == 0 else -2):02X}:00.0",
                aicore=round(100 * busy),
                hbm_used=used,
            )
        )
        procs += [Proc(npu, die, pid, name, memory) for pid, memory, _ in users]
    return chips, procs


def _kv(pairs: list[tuple[str, object]]) -> str:
    return "".join(f"        {key:<31}: {value}\n" for key, value in pairs)


def render_view(kind: str, chip: Chip) -> str | None:
    rate = round(100 * chip.hbm_used / chip.hbm_total)
    views: dict[str, list[tuple[str, object]]] = {
        "usages": [
            ("Chip ID", chip.chip),
            ("HBM Capacity(MB)", chip.hbm_total),
            ("HBM Usage Rate(%)", rate),
            ("Aicore Usage Rate(%)", chip.aicore),
            ("Aivector Usage Rate(%)", chip.aicore),
            ("Aicpu Usage Rate(%)", 0),
            ("Ctrlcpu Usage Rate(%)", 3),
            ("HBM Bandwidth Usage Rate(%)", chip.aicore // 2),
            ("NPU Utilization(%)", chip.aicore),
        ],
        "common": [
            ("Chip ID", chip.chip),
            ("Temperature(C)", chip.temp),
            ("NPU Real-time Power(W)", chip.power),
            ("Aicore Freq(MHZ)", 1650),
            ("Aicore Count", 24),
            ("HBM Capacity(MB)", chip.hbm_total),
            ("HBM Usage Rate(%)", rate),
        ],
        "power": [("NPU Real-time Power(W)", chip.power)],
        "temp": [("NPU Temperature (C)", chip.temp)],
        "memory": [
            ("HBM Capacity(MB)", chip.hbm_total),
            ("HBM Clock Speed(MHz)", 1600),
            ("HBM Temperature(C)", chip.temp + 2),
            ("HBM Manufacturer ID", "0x1"),
        ],
        "health": [("Health Status", chip.health), ("Error Code", "NA"), ("Error Information", "NA")],
    }
    pairs = views.get(kind)
    return None if pairs is None else _kv([("NPU ID", chip.npu), *pairs])


def main(argv: list[str]) -> int:
    delay = float(os.environ.get("CPCONSOLE_SIM_NPU_SMI_DELAY_S", "0") or 0)
    if delay:  # a busy host's npu-smi can take seconds
        time.sleep(delay)
    if not argv or argv[0] != "info":
        print("Usage: npu-smi info [-t type] [-i card_id] [-c chip_id]", file=sys.stderr)
        return 1
    options = dict(zip(argv[1::2], argv[2::2], strict=False))
    chips, procs = node_view()
    if "-t" not in options:
        sys.stdout.write(render_info(chips, procs))
        return 0
    try:
        npu, die = int(options.get("-i", "-1")), int(options.get("-c", "0"))
    except ValueError:
        print("Invalid parameter.", file=sys.stderr)
        return 1
    chip = next((c for c in chips if c.npu == npu and c.chip == die), None)
    if chip is None:
        print(f"The card id {npu} or chip id {die} is invalid.", file=sys.stderr)
        return 1
    text = render_view(options["-t"], chip)
    if text is None:
        print(f"Unsupported type: {options['-t']}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0
