"""The board's process table: one row per process, state in colour, live numbers."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ...core.orchestrate.progress import message_of
from ...core.orchestrate.states import TROUBLE
from ...core.plan import LaunchPlan
from ...core.safetext import terminal_safe
from ...core.view import SessionView

STATE_STYLE = {
    "ready": "bold green",
    "healthy": "green",
    "starting": "yellow",
    "planned": "dim",
    "stopped": "dim",
    "exited": "red",
    "failed": "bold red",
    "stalled": "bold magenta",
    "drifted": "magenta",
    "unknown": "bold red",
}
COLUMNS = (
    "process",
    "role",
    "node",
    "pid",
    "state",
    "uptime",
    "health",
    "TTFT p50/p99",
    "gen tok/s",
    "why / last line",
)
NARROW_WIDTH = 110  # below this, the columns one can do without give their room to "why / last line"
NARROW_DROPS = ("role", "pid", "uptime")  # the name says the role; details (enter) has the rest


def steady(shown: float | None, new: float | None) -> float | None:
    """The health latency to show: the one shown already unless the new one differs by more than
    2 ms and a quarter — loopback jitter (3 ms, 4 ms, 3 ms…) must not redraw the table every poll."""
    if shown is None or new is None or abs(new - shown) > max(2.0, 0.25 * shown):
        return new
    return shown


def ms(value: float | None) -> str:
    return "-" if value is None else (f"{value * 1000:.0f}ms" if value < 10 else f"{value:.0f}s")


class ProcessTable(DataTable[str | Text]):
    def on_mount(self) -> None:
        self._shown: dict[str, list[str | Text]] = {}
        self._health: dict[str, float | None] = {}
        self._columns: tuple[str, ...] = ()
        self.cursor_type = "row"
        self.zebra_stripes = True
        self._fit(self.app.size.width)

    def on_resize(self) -> None:
        self._fit(self.app.size.width)

    def _fit(self, width: int) -> None:
        """The column set for this terminal width; rows come back on the next show()."""
        wanted = tuple(c for c in COLUMNS if width >= NARROW_WIDTH or c not in NARROW_DROPS)
        if wanted == self._columns:
            return
        self.clear(columns=True)
        self._columns, self._shown = wanted, {}
        for column in wanted:
            self.add_column(column, key=column)

    def show(self, plan: LaunchPlan, shown: SessionView) -> None:
        now = shown.now
        for proc in plan.processes:
            view = shown.processes[proc.name]
            figures = shown.servers.get(proc.name)
            ttft = "-"
            gen = "-"
            if figures is not None:
                p50, p99 = figures.ttft
                ttft = f"{ms(p50)}/{ms(p99)}" if p50 is not None else "-"
                rate = figures.generation_tokens_per_s
                gen = f"{rate:.1f}" if rate is not None else "-"
            health = self._health[proc.name] = steady(self._health.get(proc.name), view.health_ms)
            every: list[str | Text] = [
                proc.name,
                proc.role,
                proc.node,
                str(view.pid or "-"),
                Text(view.label, style=STATE_STYLE.get(view.state, "")),
                view.uptime(now),
                (f"{health:.0f}ms" if health is not None else "-") + (" busy" if figures and figures.busy else ""),
                ttft,
                gen,
                Text(view.reason[:80], style="red")
                if view.state in TROUBLE and view.reason
                else message_of(terminal_safe(view.last_line))[:80],  # its head: the whole line is in details
            ]
            cells = [cell for column, cell in zip(COLUMNS, every, strict=True) if column in self._columns]
            before = self._shown.get(proc.name)
            if before == cells:
                continue  # an idle console redraws nothing
            self._shown[proc.name] = cells
            if before is not None:
                for column, old, cell in zip(self._columns, before, cells, strict=True):
                    if old != cell:
                        # a column is as wide as its widest cell so far: "ready" → "exited(-9)" widens it
                        self.update_cell(proc.name, column, cell, update_width=True)
            else:
                self.add_row(*cells, key=proc.name)
