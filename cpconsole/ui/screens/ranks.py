"""Every rank of the deployment (or of one instance): its node and chip, its place in the parallel
layout, its kv port and NPU IP, and its state — a rank a failure names is red, with what it says."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from ...core.ranks import RANK_COLUMNS, Rank
from ...core.safetext import terminal_safe
from ...core.session import Session
from .base import SessionScreen

STATE_STYLE = {"ready": "green", "failed": "bold red", "down": "red", "loading": "yellow", "joining": "yellow"}


class RanksScreen(SessionScreen):
    BINDINGS = [Binding("escape", "app.show('board')", "Back", id="ranks.back")]

    def __init__(self, session: Session, instance: str | None = None) -> None:
        super().__init__(session)
        self.instance = instance

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="rank-map"):
            yield Static(id="ranks-table")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"ranks of {self.instance}" if self.instance else "ranks"
        self.refresh_from(self.session)
        self.work(self.session.learn_npu_ips(), group="npu-ips")  # the IPs fill in when they come

    def refresh_from(self, session: Session) -> None:
        ranks = [r for r in session.rank_map() if self.instance is None or r.instance == self.instance]
        self.draw("#ranks-table", _tables(ranks), key=tuple(ranks))


def _tables(ranks: list[Rank]) -> Group:
    """A table per instance."""
    tables = []
    for instance in dict.fromkeys(r.instance for r in ranks):
        rows = [r for r in ranks if r.instance == instance]
        table = Table(
            title=f"{instance} ({len(rows)} ranks)", title_justify="left", expand=True, box=None, padding=(0, 1)
        )
        for column in (*RANK_COLUMNS, "what its lines say"):
            table.add_column(column, overflow="fold", ratio=4 if column == "what its lines say" else None)
        for rank in rows:
            *cells, state = rank.cells()
            note = Text(terminal_safe(rank.note), style="red" if rank.state == "failed" else "dim")
            table.add_row(*cells, Text(state, style=STATE_STYLE.get(rank.state, "")), note)
        tables.append(table)
    return Group(*tables)
