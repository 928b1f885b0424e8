"""What preflight finds, and how it reads: identical good results across nodes, chips or chip
pairs fold into one line ("link UP on 48/48 chips"); every warning and failure is listed in full."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Status = Literal["PASS", "WARN", "FAIL"]
ALL_NODES = "(all)"  # the node of a finding about the nodes together (a version table)


@dataclass(frozen=True)
class Check:
    node: str
    check: str
    status: Status
    evidence: str
    hint: str = ""
    chip: int | None = None
    peer: str = ""  # the far end of a cross-node check ("decode-a chip 3")
    same: str = ""  # how a good result reads when folded with its equals; the evidence when empty

    @classmethod
    def verdict(
        cls,
        node: str,
        check: str,
        ok: bool,
        evidence: str,
        hint: str = "",
        *,
        chip: int | None = None,
        peer: str = "",
        same: str = "",
    ) -> Check:
        """PASS when ok, else FAIL with the hint (a hint is for what failed only)."""
        return cls(node, check, "PASS" if ok else "FAIL", evidence, "" if ok else hint, chip, peer, same)

    @property
    def where(self) -> str:
        chip = f" chip {self.chip}" if self.chip is not None else ""
        return f"{self.node}{chip}" + (f" → {self.peer}" if self.peer else "")

    @property
    def line(self) -> Line:
        """This result on its own line, in full."""
        return Line(self.status, self.check, f"{self.where}: {self.evidence}", self.hint)


@dataclass(frozen=True)
class Line:
    status: Status
    check: str
    text: str
    hint: str = ""


def _unit(check: Check) -> str:
    return "chip pairs" if check.peer else "chips" if check.chip is not None else "nodes"


def fold(checks: Sequence[Check]) -> list[Line]:
    """One line per distinct good result of a check, then each warning and failure in full."""
    lines: list[Line] = []
    for name in dict.fromkeys(c.check for c in checks):
        these = [c for c in checks if c.check == name]
        good = Counter(c.same or c.evidence for c in these if c.status == "PASS")
        lines += [Line("PASS", name, f"{text} on {n}/{len(these)} {_unit(these[0])}") for text, n in good.items()]
        lines += [c.line for c in these if c.status != "PASS"]
    return lines


def tally(checks: Iterable[Check]) -> tuple[int, int, int]:
    """(failed, warnings, passed)."""
    counts = Counter(c.status for c in checks)
    return counts["FAIL"], counts["WARN"], counts["PASS"]


def version_table(versions: dict[str, dict[str, str]], nodes: Sequence[str]) -> str:
    """software × node, a `≠` after each row whose versions differ."""
    width = max(len(text) for text in [*nodes, *(v for by_node in versions.values() for v in by_node.values())])
    label = max(len(software) for software in versions)
    rows = [" " * label + "  " + "  ".join(f"{n:<{width}}" for n in nodes)]
    for software, by_node in versions.items():
        values = [by_node.get(n, "?") for n in nodes]
        differs = len(set(values)) > 1
        rows.append(f"{software:<{label}}  " + "  ".join(f"{v:<{width}}" for v in values) + ("  ≠" if differs else ""))
    return "\n".join(row.rstrip() for row in rows)
