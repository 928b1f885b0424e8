"""Every alert of this session, newest first: when it was raised, whether it is still active, and
when it cleared — what happened while nobody was looking."""

from __future__ import annotations

import time

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from ...core.session import Session
from ...core.telemetry.alerts import Alert
from .base import SessionScreen

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow"}


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _span(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class AlertsScreen(SessionScreen):
    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="alert-history"):
            yield Static(id="alerts-table")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.refresh_from(self.session)

    def refresh_from(self, session: Session) -> None:
        now = session.now()
        records = session.alert_history
        # redrawn on a new or cleared alert, and each second while one is active (its age moves)
        key = (len(records), sum(r.cleared_at is None for r in records), int(now) if session.alerts else None)
        if self._drawn.get("#alerts-table") == key:
            return
        if not records:
            self.draw("#alerts-table", Text("no alerts this session", style="dim"), key=key)
            return
        table = Table(expand=True, box=None, padding=(0, 1))
        for column in ("raised", "severity", "source", "alert", "state"):
            table.add_column(column, overflow="fold", ratio=3 if column == "alert" else None)
        for record in reversed(records):
            alert = record.alert
            if record.cleared_at is None:
                state = Text(f"active {_span(now - record.raised_at)}", style="bold")
            else:
                state = Text(
                    f"cleared {_clock(record.cleared_at)} after {_span(record.cleared_at - record.raised_at)}",
                    style="dim",
                )
            table.add_row(
                _clock(record.raised_at),
                Text(alert.severity, style=SEVERITY_STYLE.get(alert.severity, "")),
                alert.source,
                _described(alert),
                state,
            )
        self.draw("#alerts-table", table, key=key)


def _described(alert: Alert) -> Text:
    """The alert's message; a cause read from the logs adds where it is, what to do and its last line."""
    text = Text(alert.message)
    if alert.place:
        text.append(f"\nwhere {alert.place}", style="bold")
    if alert.hint:
        text.append(f"\nhint  {alert.hint}", style="yellow")
    if alert.evidence:
        text.append(f"\nlast  {alert.evidence}", style="dim")
    return text
