"""The log of one process, or all of them merged with prefixes; follows as lines arrive.
Lines are written in batches (one write per refresh), ANSI colour codes stripped."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Footer, Header, Log, Static

from ...core.orchestrate.causes import POLL_LINE
from ...core.remote.logstore import strip_ansi
from ...core.session import Session
from .base import SessionScreen

MAX_LINE = 1000  # very long lines are cut for display


class LogsScreen(SessionScreen):
    BINDINGS = [
        ("left_square_bracket", "cycle(-1)", "Prev"),
        ("right_square_bracket", "cycle(1)", "Next"),
        ("h", "toggle_polls", "Health/metrics lines"),
    ]

    def __init__(self, session: Session, process: str | None = None) -> None:
        super().__init__(session)
        self.process = process  # None: every process, merged
        self.hide_polls = True
        self._seen: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="source")
        yield Log(id="log", max_lines=20_000)
        yield Footer()

    def on_mount(self) -> None:
        self._reset()

    def _names(self) -> list[str]:
        return [self.process] if self.process else [p.name for p in self.session.plan.processes]

    def _reset(self) -> None:
        self.query_one(Log).clear()
        self._seen = {}
        label = self.process or "all processes"
        polls = "hidden" if self.hide_polls else "shown"
        self.query_one("#source", Static).update(
            Text(f"logs: {label}   [ and ] switch process   h: health/metrics polls {polls}")
        )
        self.refresh_from(self.session)

    def action_toggle_polls(self) -> None:
        self.hide_polls = not self.hide_polls
        self._reset()

    def action_cycle(self, step: int) -> None:
        names = [None, *(p.name for p in self.session.plan.processes)]
        self.process = names[(names.index(self.process) + step) % len(names)]
        self._reset()

    def refresh_from(self, session: Session) -> None:
        width = max(len(n) for n in self._names())
        batch: list[str] = []
        for name in self._names():
            store = session.orchestrator.stores[name]
            start, lines = store.since(self._seen.get(name, 0))
            self._seen[name] = start + len(lines)
            prefix = f"{name:<{width}} | " if self.process is None else ""
            # cut first: a megabyte-long line must not reach a regex
            batch.extend(
                prefix + strip_ansi(line[: 2 * MAX_LINE])[:MAX_LINE]
                for line in lines
                if not (self.hide_polls and POLL_LINE.search(line, 0, 300))
            )
        if batch:
            self.query_one(Log).write_lines(batch)
