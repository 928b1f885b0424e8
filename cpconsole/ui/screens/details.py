"""One process in full: where and how it runs, its state and why, its ports, health and metrics,
what differs from its manifest, and its newest log lines."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from ...core.orchestrate.progress import POLL_LINE
from ...core.safetext import terminal_safe
from ...core.session import Session
from ..widgets.process_table import STATE_STYLE, ms
from .base import SessionScreen

TAIL = 15


class DetailsScreen(SessionScreen):
    BINDINGS = [
        Binding("l", "logs", "Logs"),
        Binding("k", "ranks", "Ranks", id="details.ranks"),
        Binding("escape", "app.show('board')", "Back"),
    ]

    def __init__(self, session: Session, process: str) -> None:
        super().__init__(session)
        self.process = process
        self.proc = next(p for p in session.plan.processes if p.name == process)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="details"):
            yield Static(id="summary")
            yield Static("LAST LINES", classes="section")
            yield Static(id="tail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.refresh_from(self.session)

    async def action_logs(self) -> None:
        await self.app.run_action(f"logs({self.process!r})")

    async def action_ranks(self) -> None:
        """The ranks of its instance (all of them for the proxy)."""
        await self.app.run_action(f"ranks({self.proc.instance!r})")

    def refresh_from(self, session: Session) -> None:
        shown = session.view()
        proc, view = self.proc, shown.processes[self.process]
        text = Text()
        text.append(proc.name, style="bold")
        text.append(f"   {proc.role}" + (f" of {proc.instance}" if proc.instance else ""))
        text.append(f"  on {proc.node} ({proc.host}, serves on {proc.address})\n")
        text.append("state    ")
        text.append(view.label, style=STATE_STYLE.get(view.state, ""))
        if view.reason:
            text.append(f"  {view.reason}")
        text.append(f"\npid      {view.pid or '-'}   uptime {view.uptime(shown.now)}")
        text.append(f"   health {ms(view.health_ms / 1000) if view.health_ms is not None else '-'}")
        if view.progress:
            text.append(f"\nprogress {view.progress}")
        if view.cause is not None:
            text.append(f"\ncause    {view.cause.summary}", style="bold red")
            if view.cause.place:
                text.append(f"\nwhere    {view.cause.place}", style="bold")
            text.append(f"\nhint     {view.cause.hint}", style="yellow")
        if proc.ports:
            text.append(
                "\nports    "
                + ", ".join(f"{u.kind} {u.start}" + (f"-{u.end}" if u.end != u.start else "") for u in proc.ports)
            )
        figures = shown.servers.get(self.process)
        if figures is not None and figures.latest is not None:
            latest, (p50, p99) = figures.latest, figures.ttft
            text.append(
                f"\nmetrics  running {latest.running:.0f}  waiting {latest.waiting:.0f}  "
                f"KV cache {latest.kv_cache_usage or 0:.0%}  TTFT p50 {ms(p50)}  p99 {ms(p99)}"
            )
        if view.drift:
            text.append("\ndrifted from its manifest:\n" + "".join(f"  {d}\n" for d in view.drift), style="magenta")
        text.append("\n\ncommand  ", style="bold")
        text.append(" ".join(proc.argv), style="cyan")
        text.append("\nenv      ", style="bold")
        text.append(" ".join(f"{k}={v}" for k, v in proc.env) or "-")
        self.draw("#summary", text)
        # our own health/metrics polls are noise here, as on the logs screen
        recent = session.log(self.process).last(TAIL * 20)
        lines = [line for line in recent if not POLL_LINE.search(line, 0, 300)][-TAIL:]
        self.draw(
            "#tail",
            Text(
                "\n".join(terminal_safe(line)[:400] for line in lines) or "no output yet", style="" if lines else "dim"
            ),
        )
