"""One line per node: chips, HBM, AICore, worst health, and whether the numbers are fresh."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.widgets import Static

from ...core.telemetry.npu_smi import NpuSmiInfo
from ...core.telemetry.pollers import PollResult

HEALTH_STYLE = {"OK": "green", "Warning": "yellow", "Alarm": "bold red", "Critical": "bold red"}


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 24, top: float = 1.0) -> str:
    """Values from 0 to `top` (fractions by default), newest last, as block characters."""
    recent = values[-width:]
    scale = len(SPARK) / top if top > 0 else 0.0
    return "".join(SPARK[max(0, min(len(SPARK) - 1, int(v * scale)))] for v in recent)


def bar(fraction: float, width: int = 12) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


class NodePanel(Static):
    def show(self, results: Mapping[str, PollResult[NpuSmiInfo]], now: float) -> None:
        text = Text()
        for node, result in results.items():
            text.append(f"{node:<12}", style="bold")
            info = result.value
            if info is None:
                text.append("no npu-smi data" + (f" ({result.error})" if result.error else ""), style="dim")
                text.append("\n")
                continue
            used = sum(c.hbm_used_mb or 0 for c in info.chips)
            total = sum(c.hbm_total_mb or 0 for c in info.chips) or 1
            aicore = sum(c.aicore_pct or 0 for c in info.chips) / max(1, len(info.chips))
            text.append(
                f"{len(info.chips):>2} chips  HBM {bar(used / total)} {used / total:4.0%}  AICore {aicore:3.0f}%  "
            )
            text.append(info.worst_health, style=HEALTH_STYLE.get(info.worst_health, "bold red"))
            if result.stale:
                age = result.age(now)
                text.append(f"  stale {age:.0f}s" if age is not None else "  stale", style="bold yellow")
            text.append("\n")
        if text != getattr(self, "_shown", None):  # an idle console redraws nothing
            self._shown = text
            self.update(text)
