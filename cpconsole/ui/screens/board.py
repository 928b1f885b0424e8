"""Home: the roll-up, the process table, the nodes, the alerts."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Static

from ...core.journal import JournalEntry
from ...core.safetext import terminal_safe
from ...core.session import Session
from ...core.view import SessionView
from ..widgets.node_panel import NodePanel
from ..widgets.process_table import ProcessTable
from .base import SessionScreen
from .metrics import traffic_summary


def compact_age(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def last_action_text(entry: JournalEntry, now: float) -> str:
    """`up by bob@jump (cli): ok, 2m ago` — the journal's newest entry."""
    at = entry.epoch()
    ago = f", {compact_age(now - at)} ago" if at is not None else ""
    return terminal_safe(f"{entry.verb} by {entry.who} ({entry.via}): {entry.result}{ago}")[:120]


def rollup(session: Session, view: SessionView, alerts_key: str = "8") -> Text:
    """The board's top line; alerts_key: the key of the alert history (keymap.yaml may move it)."""
    views = view.processes
    plan = session.plan
    text = Text()
    if session.unverified_host_keys:
        nodes = ", ".join(line.split(":", 1)[0] for line in session.unverified_host_keys)
        text.append(f"⚠ SSH host keys NOT verified: {nodes}", style="bold white on red")
        text.append("  ")
    tunnelled = [node for node, route in session.http_routes().items() if route == "ssh"]
    if tunnelled:  # the servers' ports are not reached from here: HTTP goes through their SSH
        text.append(f"HTTP via SSH: {', '.join(tunnelled)}  ", style="dim")
    for role, short in (("prefill", "P"), ("decode", "D")):
        names = [p.name for p in plan.processes if p.role == role]
        if names:
            ready = sum(views[n].state == "ready" for n in names)
            text.append(f"{short} {ready}/{len(names)}  ", style="green" if ready == len(names) else "yellow")
    if any(p.role == "proxy" for p in plan.processes):
        ok = views["proxy"].state == "ready"
        text.append("proxy " + ("✓" if ok else "✗") + "  ", style="green" if ok else "red")
    every = all(v.state == "ready" for v in views.values())
    text.append("ready" if every else (session.busy or "not ready"), style="bold green" if every else "bold yellow")
    proxy = next((f.traffic for f in view.servers.values() if f.traffic is not None), None)
    if proxy is not None and (proxy.answered or proxy.failed):
        text.append(" · ", style="dim")
        text.append_text(traffic_summary(proxy))
    routed = next((f.backends for f in view.servers.values() if f.backends), {})
    out = sorted(f"{instance} {state}" for instance, state in routed.items() if state != "healthy")
    if out:  # what the proxy keeps out of rotation, in its own words
        text.append(" · ", style="dim")
        text.append("proxy: " + ", ".join(out), style="bold red")
    if session.last_action:
        text.append(" · ", style="dim")
        text.append(last_action_text(session.last_action, session.now()), style="dim")
    if session.alerts:
        text.append(" · ", style="dim")
        text.append(f"{len(session.alerts)} alert(s)", style="bold red")
        text.append(f" ({alerts_key}: history)", style="dim")
    return text


class BoardScreen(SessionScreen):
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="rollup")
        with Vertical(id="board"):
            yield ProcessTable(id="processes")
            yield Static("NODES", classes="section")
            yield NodePanel(id="nodes")
            yield Static("ALERTS", classes="section")
            yield Static(id="alerts")
        yield Footer(compact=True)

    def refresh_from(self, session: Session) -> None:
        view = session.view()
        self.draw("#rollup", rollup(session, view, self.key_shown("screen.alerts")))
        self.query_one(ProcessTable).show(session.plan, view)
        self.query_one(NodePanel).show(view.npu, view.now)
        alerts = Text()
        for alert in session.alerts:
            alerts.append(
                f"{alert.severity:<8} {alert.source:<12} {alert.message}\n",
                style="bold red" if alert.severity == "critical" else "yellow",
            )
        self.draw("#alerts", alerts or Text("none", style="dim"))

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens its details."""
        await self.app.run_action(f"details({str(event.row_key.value)!r})")

    @property
    def selected(self) -> str | None:
        table = self.query_one(ProcessTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
