"""The deployment's journal: who did what to it, from where, how it ended — read from its first
node (every operator's console shows the same), newest first, read again every few seconds."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from ...core.journal import JournalEntry
from ...core.session import Session
from .base import SessionScreen

RESULT_STYLE = {"ok": "green", "failed": "bold red"}
EVERY_S = 5.0


class JournalScreen(SessionScreen):
    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.entries: list[JournalEntry] | None = None  # None: not read yet

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="journal"):
            yield Static(Text("reading the journal …", style="dim"), id="journal-table")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "journal"
        self._read()
        self.set_interval(EVERY_S, self._read)

    def _read(self) -> None:
        self.work(self._load(), group="journal")

    async def _load(self) -> None:
        self.entries = await self.session.journal(200)
        self.refresh_from(self.session)

    def refresh_from(self, session: Session) -> None:
        if self.entries is None:
            return
        if not self.entries:
            self.draw("#journal-table", Text("no action recorded yet", style="dim"))
            return
        table = Table(expand=True, box=None, padding=(0, 1))
        # what an action did and how it ended share the room left; the rest keep their width
        flexible = {"action": 3, "result": 2}
        for column in ("at (UTC)", "who", "via", "action", "result", "took"):
            table.add_column(column, overflow="fold", ratio=flexible.get(column), no_wrap=column not in flexible)
        for entry in reversed(self.entries):
            table.add_row(
                entry.at.replace("T", " ").rstrip("Z"),
                entry.who,
                entry.via,
                " ".join([entry.verb, *entry.targets]),
                Text(entry.result, style=RESULT_STYLE.get(entry.result, "red")),
                f"{entry.seconds:.1f} s",
            )
        self.draw("#journal-table", table, key=tuple(self.entries))
