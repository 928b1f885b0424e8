"""The console: a small App that owns a Session, switches screens, turns keys into intents."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from ..core.session import Session
from .screens.base import SessionScreen
from .screens.board import BoardScreen
from .screens.logs import LogsScreen
from .screens.metrics import MetricsScreen
from .screens.npus import NpusScreen
from .screens.plan import PlanScreen


class ConsoleApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "cpconsole"
    BINDINGS = [
        Binding("1", "board", "Board"),
        Binding("2", "logs", "Logs"),
        Binding("3", "npus", "NPUs"),
        Binding("4", "metrics", "Metrics"),
        Binding("5", "plan", "Plan"),
        Binding("enter", "logs_of_selected", "Logs of row", show=False),
        Binding("u", "up", "Up"),
        Binding("D", "down", "Down"),
        Binding("r", "restart", "Restart row"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, session: Session, *, live: bool = True, refresh_s: float = 0.5) -> None:
        super().__init__()
        self.session = session
        self.live = live
        self.refresh_s = refresh_s
        self.sub_title = session.plan.profile
        self.board = BoardScreen(session)

    async def on_mount(self) -> None:
        await self.push_screen(self.board)
        if self.live:
            await self.session.start()
        self.refresh_screens()
        self.set_interval(self.refresh_s, self.refresh_screens)

    def refresh_screens(self) -> None:
        screen = self.screen
        if isinstance(screen, SessionScreen):
            screen.refresh_from(self.session)

    def action_board(self) -> None:
        if self.screen is not self.board:
            self.pop_screen()

    def action_logs(self, process: str | None = None) -> None:
        if isinstance(self.screen, LogsScreen):
            return
        self._switch(LogsScreen(self.session, process))

    def action_npus(self) -> None:
        if not isinstance(self.screen, NpusScreen):
            self._switch(NpusScreen(self.session))

    def action_metrics(self) -> None:
        if not isinstance(self.screen, MetricsScreen):
            self._switch(MetricsScreen(self.session))

    def action_plan(self) -> None:
        if not isinstance(self.screen, PlanScreen):
            self._switch(PlanScreen(self.session))

    def _switch(self, screen: SessionScreen) -> None:
        """One screen above the board at a time."""
        if self.screen is not self.board:
            self.pop_screen()
        self.push_screen(screen)

    def action_logs_of_selected(self) -> None:
        if self.screen is self.board:
            self.action_logs(self.board.selected)

    def action_up(self) -> None:
        self.run_worker(self.session.up(), exclusive=True, group="intent")
        self.notify("starting what is not running")

    def action_down(self) -> None:
        self.run_worker(self.session.down(), exclusive=True, group="intent")
        self.notify("stopping every process")

    def action_restart(self) -> None:
        target = self.board.selected
        if target:
            self.run_worker(self.session.restart(target), exclusive=True, group="intent")
            self.notify(f"restarting {target}'s instance")

    async def on_unmount(self) -> None:
        await self.session.close()
