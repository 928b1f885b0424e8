"""Preflight: every node checked before launch — problems first and in full, identical good results
folded into one line each ("link UP on 48/48 chips"); `v` shows every result."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from ...core.preflight import fold, tally
from ...core.session import Session
from .base import SessionScreen

STATUS_STYLE = {"PASS": "green", "WARN": "bold yellow", "FAIL": "bold red"}
ORDER = {"FAIL": 0, "WARN": 1, "PASS": 2}


class PreflightScreen(SessionScreen):
    BINDINGS = [Binding("p", "run", "Run preflight"), Binding("v", "verbose", "Every result")]

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.verbose = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="preflight-head")
        with VerticalScroll(id="preflight"):
            yield Static(id="preflight-table")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.refresh_from(self.session)

    def action_run(self) -> None:
        self.work(self.session.preflight(), group="preflight")
        self.refresh_from(self.session)

    def action_verbose(self) -> None:
        self.verbose = not self.verbose
        self.refresh_from(self.session)

    def refresh_from(self, session: Session) -> None:
        checks, took = session.preflight_checks, session.preflight_took
        head = Text()
        if session.preflight_running:
            head.append(f"checking {len(session.plan.nodes)} node(s)…", style="bold")
        elif checks is None:
            head.append(
                "not run yet — p checks every node: chips, NPU links and pings, ports, model, containers, versions",
                style="dim",
            )
        elif checks is not None and took is not None:
            failed, warned, passed = tally(checks)
            head.append(f"{failed} failed", style="bold red" if failed else "green")
            head.append(f" · {warned} warning(s)", style="bold yellow" if warned else "dim")
            head.append(f" · {passed} passed · {took:.1f} s", style="dim")
            if session.preflight_beside:
                head.append(
                    f" · checked with {len(session.preflight_beside)} process(es) running: their own ports not counted",
                    style="dim",
                )
        self.draw("#preflight-head", head)
        key = (id(checks), took, self.verbose)
        if checks is None or self._drawn.get("#preflight-table") == key:
            return
        lines = [c.line for c in checks] if self.verbose else fold(checks)
        table = Table(expand=True, box=None, padding=(0, 1), show_header=True)
        table.add_column("", width=4, no_wrap=True)
        table.add_column("check", no_wrap=True)
        table.add_column("result", ratio=3, overflow="fold")
        table.add_column("hint", ratio=2, overflow="fold")
        for line in sorted(lines, key=lambda line: ORDER[line.status]):
            table.add_row(
                Text(line.status, style=STATUS_STYLE[line.status]), line.check, line.text, Text(line.hint, style="dim")
            )
        self.draw("#preflight-table", table, key=key)
