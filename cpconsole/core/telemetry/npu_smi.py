"""`npu-smi info` and its `-t` key-value views, read from their structure rather than from fixed
columns: table rows are split on `|`, chip rows are told apart by their health or bus-id cell, and
"used / total" pairs are found wherever they stand (the numbers may touch the `/`). A field that
says NA, - or something unknown is None; the rest of the chip and of the node still parse.

Garbage in gives a ParseError naming the line, never another kind of exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEALTH_STATES = ("OK", "Warning", "Alarm", "Critical", "UNKNOWN")
_HEALTH = {h.lower(): h for h in HEALTH_STATES}
_PAIR = re.compile(r"(\d+)\s*/\s*(\d+)")
_VERSION = re.compile(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)")
_BUS = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]$")


class ParseError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}")


@dataclass(frozen=True)
class NpuChip:
    npu_id: int
    chip_id: int
    phy_id: int | None
    name: str
    health: str
    power_w: float | None
    temp_c: int | None
    aicore_pct: int | None
    memory_used_mb: int | None
    memory_total_mb: int | None
    hbm_used_mb: int | None
    hbm_total_mb: int | None
    bus_id: str | None  # None where npu-smi says NA (Atlas 200I/310B-class devices have no PCIe bus)

    @property
    def hbm_fraction(self) -> float | None:
        if self.hbm_used_mb is None or not self.hbm_total_mb:
            return None
        return self.hbm_used_mb / self.hbm_total_mb


@dataclass(frozen=True)
class NpuProcess:
    npu_id: int
    chip_id: int
    pid: int
    name: str
    memory_mb: int


@dataclass(frozen=True)
class NpuSmiInfo:
    version: str
    chips: tuple[NpuChip, ...]
    processes: tuple[NpuProcess, ...]

    @property
    def worst_health(self) -> str:
        order = {h: i for i, h in enumerate(HEALTH_STATES)}
        return max((c.health for c in self.chips), key=lambda h: order.get(h, len(order)), default="OK")


def _cells(line: str) -> list[str] | None:
    text = line.strip()
    if len(text) < 2 or text[0] != "|" or text[-1] != "|":
        return None
    return [cell.strip() for cell in text[1:-1].split("|")]


def _int(text: str, line: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ParseError(line, f"{what} should be a whole number, not {text!r}") from None


def _number(text: str, line: int, what: str) -> float | None:
    if text in ("-", "NA", "N/A"):
        return None
    try:
        return float(text)
    except ValueError:
        raise ParseError(line, f"{what} should be a number or '-', not {text!r}") from None


def _split_values(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Single values and (used, total) pairs of a cell, in their order of appearance."""
    pairs = [(int(a), int(b)) for a, b in _PAIR.findall(text)]
    singles = _PAIR.sub(" ", text).split()
    return singles, pairs


@dataclass
class _Layout:
    has_phy: bool = False
    pair_names: tuple[str, ...] = ()  # e.g. ("memory", "hbm") from the second header row
    process_memory_unit: str = "MB"


def _pair_names(header: str) -> tuple[str, ...]:
    names = []
    for word in header.split():
        lowered = word.lower()
        if lowered.startswith("hbm-usage"):
            names.append("hbm")
        elif lowered.startswith("memory-usage"):
            names.append("memory")
    return tuple(names)


def parse_info(text: str) -> NpuSmiInfo:
    version = ""
    layout = _Layout()
    chips: list[NpuChip] = []
    processes: list[NpuProcess] = []
    pending: tuple[int, list[str]] | None = None  # the first row of a chip, waiting for its second
    saw_header = False
    in_processes = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip() or line.strip() == "..." or line.lstrip().startswith("+"):
            continue
        cells = _cells(line)
        if cells is None:
            raise ParseError(number, f"not a table row: {line.strip()[:60]!r}")
        first = cells[0]
        if match := _VERSION.search(line):
            version = match.group(2)
            continue
        if first.startswith("NPU") and "Name" in first:
            saw_header, in_processes = True, False
            continue
        if first.startswith("Chip") and len(cells) >= 3:
            layout.has_phy = "Phy-ID" in first
            layout.pair_names = _pair_names(cells[2])
            continue
        if first.startswith("NPU") and len(cells) >= 2 and "Process id" in cells[1]:
            in_processes = True
            unit = re.search(r"Process memory\((\w+)\)", line)
            layout.process_memory_unit = unit.group(1) if unit else "MB"
            continue
        if first.startswith("No running processes found"):
            continue
        if not saw_header:
            raise ParseError(number, "no npu-smi table header before this row")
        if in_processes:
            processes.append(_process(cells, number, layout))
        elif len(cells) >= 3 and cells[1].lower() in _HEALTH:
            if pending is not None:
                raise ParseError(pending[0], "chip row without its second (bus id) row")
            pending = (number, cells)
        elif len(cells) >= 3 and pending is not None:
            chips.append(_chip(pending, (number, cells), layout))
            pending = None
        else:
            raise ParseError(number, f"unexpected row: {line.strip()[:60]!r}")
    if pending is not None:
        raise ParseError(pending[0], "chip row without its second (bus id) row")
    if not saw_header:
        raise ParseError(1, "this is not `npu-smi info` output (no table header found)")
    return NpuSmiInfo(version, tuple(chips), tuple(processes))


def _chip(top: tuple[int, list[str]], bottom: tuple[int, list[str]], layout: _Layout) -> NpuChip:
    (line_a, a), (line_b, b) = top, bottom
    head = a[0].split(maxsplit=1)
    if len(head) != 2:
        raise ParseError(line_a, f"expected 'NPU-ID Name', got {a[0]!r}")
    npu_id, name = _int(head[0], line_a, "NPU id"), head[1]
    singles, _hugepages = _split_values(a[2])
    if len(singles) < 2:
        raise ParseError(line_a, f"expected power and temperature in {a[2]!r}")
    power = _number(singles[0], line_a, "power")
    temp = _number(singles[1], line_a, "temperature")
    ids = b[0].split()
    if not ids:
        raise ParseError(line_b, "missing chip id")
    chip_id = _int(ids[0], line_b, "chip id")
    phy = int(ids[1]) if layout.has_phy and len(ids) > 1 and ids[1].isdigit() else None
    bus = b[1] if _BUS.match(b[1]) else None  # NA, - or a form we do not know: that field only
    b_singles, b_pairs = _split_values(b[2])
    aicore = _number(b_singles[0], line_b, "AICore %") if b_singles else None
    names = layout.pair_names or (("memory", "hbm") if len(b_pairs) == 2 else ("memory",))
    values = dict(zip(names, b_pairs, strict=False))
    memory, hbm = values.get("memory"), values.get("hbm")
    return NpuChip(
        npu_id=npu_id,
        chip_id=chip_id,
        phy_id=phy,
        name=name,
        health=_HEALTH[a[1].lower()],
        power_w=power,
        temp_c=int(temp) if temp is not None else None,
        aicore_pct=int(aicore) if aicore is not None else None,
        memory_used_mb=memory[0] if memory else None,
        memory_total_mb=memory[1] if memory else None,
        hbm_used_mb=hbm[0] if hbm else None,
        hbm_total_mb=hbm[1] if hbm else None,
        bus_id=bus,
    )


def _process(cells: list[str], line: int, layout: _Layout) -> NpuProcess:
    if len(cells) < 4:
        raise ParseError(line, "a process row has NPU/Chip, pid, name and memory cells")
    ids = cells[0].split()
    if len(ids) != 2:
        raise ParseError(line, f"expected 'NPU Chip', got {cells[0]!r}")
    memory = _int(cells[3].split()[0] if cells[3] else "", line, "process memory")
    if layout.process_memory_unit == "B":
        memory //= 1024 * 1024
    elif layout.process_memory_unit == "KB":
        memory //= 1024
    return NpuProcess(
        npu_id=_int(ids[0], line, "NPU id"),
        chip_id=_int(ids[1], line, "chip id"),
        pid=_int(cells[1], line, "process id"),
        name=cells[2],
        memory_mb=memory,
    )


# ---------------------------------------------------------------- -t views


def parse_kv(text: str) -> dict[str, str]:
    """`npu-smi info -t usages|common|power|temp|memory|health|board` → {field: value}.

    Repeated keys (e.g. `Chip ID` in a per-NPU listing) keep their first value."""
    fields: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        key, sep, value = raw.partition(":")
        if not sep or not key.strip():
            raise ParseError(number, f"expected 'Name : value', got {raw.strip()[:60]!r}")
        fields.setdefault(key.strip(), value.strip())
    return fields


def kv_int(fields: dict[str, str], key: str) -> int | None:
    value = fields.get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def kv_float(fields: dict[str, str], key: str) -> float | None:
    value = fields.get(key)
    try:
        return float(value) if value not in (None, "-", "NA") else None
    except ValueError:
        return None
