"""The context-length sweep: TTFT against prompt length as a chart (the newest sweep, the earlier
ones and the guide's figure where the deployment is the guide's), its table with the prefill /
hand-off split, and `s` to run a new sweep through the proxy (each length shows as it is measured)."""

from __future__ import annotations

import dataclasses

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static
from textual_plotext import PlotextPlot

from ...core.session import Session
from ...core.smoke import store
from ...core.smoke.sweep import (
    SweepPoint,
    SweepRun,
    SweepSettings,
    layout,
    load_sweeps,
    model_path,
    reference_for,
    short_length,
)
from ...results import EARLIER, chart_series, draw, sweep_rows
from .base import SessionScreen
from .dialogs import ConfirmScreen


class SweepScreen(SessionScreen):
    BINDINGS = [Binding("s", "run", "Run sweep", id="sweep.run")]

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.runs: list[SweepRun] = []  # stored, oldest first
        self.live: SweepRun | None = None  # the sweep measuring now, with its lengths so far

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="sweep-head")
        yield PlotextPlot(id="sweep-chart")
        yield Static(id="sweep-table")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "sweep"
        self.runs = load_sweeps(self.session.plan.profile)
        self._show()

    def action_run(self) -> None:
        if self.live is not None:
            self.notify("a sweep is running", severity="warning")
            return
        settings = dataclasses.replace(self.session.checks.sweep, target=self.session.plan.front_door)
        lengths = ", ".join(short_length(n) for n in settings.lengths)
        question = (
            f"Sweep through {settings.target}: {settings.repeat} requests of each length ({lengths} tokens), one "
            "at a time. Long prompts keep the prefill busy for a while; real traffic waits behind them."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.work(self._sweep(settings), group="sweep")

        self.app.push_screen(ConfirmScreen(question, "Run sweep"), answered)

    async def _sweep(self, settings: SweepSettings) -> None:
        plan = self.session.plan
        self.live = SweepRun(plan.profile, plan.digest, layout(plan), model_path(plan), store.stamp(), settings, ())
        self._show()

        def measured(point: SweepPoint) -> None:
            if self.live is not None:
                self.live = dataclasses.replace(self.live, points=(*self.live.points, point))
                self._show()

        try:
            await self.session.sweep(settings, measured)
        finally:
            self.live = None
            self.runs = load_sweeps(plan.profile)
            self._show()

    def _show(self) -> None:
        shown = ([self.live] if self.live else []) + list(reversed(self.runs))[: EARLIER + 1 - bool(self.live)]
        self.draw("#sweep-head", self._head(), key=(self.live, len(self.runs)))
        plot = self.query_one("#sweep-chart", PlotextPlot)
        draw(plot.plt, chart_series(shown, reference_for(shown[0])) if shown else [], colour=True)
        plot.refresh()
        if not shown:
            self.draw("#sweep-table", Text(""))
            return
        rows = sweep_rows(shown[0], shown[1:], reference_for(shown[0]))
        table = Table(expand=True, box=None, padding=(0, 1))
        for column in rows[0]:
            table.add_column(column, overflow="fold")
        for row in rows[1:]:
            table.add_row(*row)
        self.draw("#sweep-table", table, key=tuple(shown))

    def _head(self) -> Text:
        head = Text()
        if self.live is not None:
            measured, lengths = len(self.live.points), len(self.live.settings.lengths)
            head.append(f"sweeping through {self.live.settings.target}: {measured}/{lengths} lengths", style="bold")
        elif not self.runs:
            head.append("no sweep of this profile yet — s runs one through the proxy", style="dim")
        else:
            newest = self.runs[-1]
            head.append(f"newest {newest.started} · {newest.layout} · profile {newest.digest[:8]}", style="bold")
            head.append(f" · {newest.settings.repeat} per length, medians · s runs another", style="dim")
        current = self.live or (self.runs[-1] if self.runs else None)
        for point in current.points if current else ():
            if point.error:
                head.append(f"\n{short_length(point.length)}: {point.error}", style="red")
        return head
