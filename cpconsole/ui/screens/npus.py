"""Every chip of every node: HBM, AICore, temperature, power, health, and who uses it."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from ...core.session import Session
from ..widgets.node_panel import HEALTH_STYLE, bar, sparkline
from .base import SessionScreen

# below this many columns the HBM bar and MB figures do not fit beside the rest: percent and GiB
WIDE_ENOUGH = 100


class NpusScreen(SessionScreen):
    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="npus"):
            chips = [n.name for n in self.session.plan.nodes if n.chips]
            for node in chips:
                yield Static(id=f"npu-{node}", classes="npu-node")
            if not chips:
                yield Static(Text("no node of this profile has NPUs (chips: 0)", style="dim"))
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.refresh_from(self.session)

    def on_resize(self) -> None:
        self.refresh_from(self.session)

    def refresh_from(self, session: Session) -> None:
        view = session.view()
        for node in (n for n in session.plan.nodes if n.name in view.npu):
            result = view.npu[node.name]
            selector = f"#npu-{node.name}"
            info = result.value
            title = Text(f"{node.name}  {node.host}  ", style="bold")
            if result.stale:
                age = result.age(view.now)
                title.append(f"stale{f' {age:.0f}s' if age is not None else ''}: {result.error}", style="bold yellow")
            if info is None:
                self.draw(selector, title + Text("\nno npu-smi data yet", style="dim"))
                continue
            history = view.npu_history.get(node.name, ())
            wide = self.size.width >= WIDE_ENOUGH
            drawn_from = (result.ok_at, result.error, title.plain, len(history), wide)
            if self._drawn.get(selector) == drawn_from:
                continue  # a table is rebuilt only from a new reading
            title.append(
                f"npu-smi {info.version}   HBM {sparkline([h for h, _ in history])}  "
                f"AICore {sparkline([a for _, a in history])}"
            )
            table = Table(title=title, title_justify="left", expand=True, box=None, padding=(0, 1))
            hbm_columns = ("HBM", "used/total MB") if wide else ("HBM", "used/total")
            for column in ("NPU/chip", "phy", "health", *hbm_columns, "AICore", "temp", "power", "processes"):
                table.add_column(column, no_wrap=True)
            users: dict[tuple[int, int], list[str]] = {}
            for proc in info.processes:
                users.setdefault((proc.npu_id, proc.chip_id), []).append(f"{proc.pid} {proc.name}".strip())
            for chip in info.chips:
                fraction = chip.hbm_fraction or 0.0
                table.add_row(
                    f"{chip.npu_id}/{chip.chip_id}",
                    str(chip.phy_id if chip.phy_id is not None else "-"),
                    Text(chip.health, style=HEALTH_STYLE.get(chip.health, "bold red")),
                    Text(bar(fraction, 10) if wide else f"{fraction:.0%}", style="red" if fraction > 0.95 else "green"),
                    hbm_used(chip.hbm_used_mb, chip.hbm_total_mb, wide),
                    f"{chip.aicore_pct}%" if chip.aicore_pct is not None else "-",
                    f"{chip.temp_c}°C" if chip.temp_c is not None else "-",
                    f"{chip.power_w:.1f} W" if chip.power_w is not None else "-",
                    ", ".join(users.get((chip.npu_id, chip.chip_id), [])),
                )
            self.draw(selector, table, key=drawn_from)


def hbm_used(used_mb: int | None, total_mb: int | None, wide: bool) -> str:
    """`53725/65536` (MB) where it fits, else `52.5/64G` (GiB)."""
    if not total_mb:
        return "-"
    if wide:
        return f"{used_mb}/{total_mb}"
    return f"{(used_mb or 0) / 1024:.1f}/{total_mb / 1024:.0f}G"
