"""The prompt pane: write a prompt, pick a target and parameters, watch the answer stream in, read
TTFT/TPOT/ITL under it. ctrl+r sends, ctrl+t runs the probe path (a 1-token request per hop), ctrl+e
exports the history as Markdown. Every request is kept in the history across runs."""

from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Input, Label, Log, Select, Static, TextArea

from ...core.session import Session
from ...core.smoke.history import PromptRecord, to_markdown
from ...core.smoke.suite import SmokeCheck
from .base import SessionScreen


class PromptScreen(SessionScreen):
    BINDINGS = [
        Binding("ctrl+r", "send", "Send", priority=True),
        Binding("ctrl+t", "probe_path", "Probe path", priority=True),
        Binding("ctrl+e", "export", "Export history", priority=True),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.targets = [p.name for p in session.plan.processes if p.http_port]
        self.export_dir = Path.cwd()
        self.last: PromptRecord | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="prompt-params"):
            yield Label("target")
            default = "proxy" if "proxy" in self.targets else self.targets[0]
            yield Select([(t, t) for t in self.targets], value=default, allow_blank=False, id="target")
            yield Label("max tokens")
            yield Input("256", id="max-tokens", type="integer")
            yield Label("temperature")
            yield Input("0", id="temperature", type="number")
        yield TextArea(id="prompt-text", soft_wrap=True)
        yield Static(id="prompt-stats")
        yield Log(id="answer", max_lines=5000)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#prompt-text", TextArea).focus()
        earlier = self.session.history.load(self.session.plan.profile, limit=1)
        self.query_one("#prompt-stats", Static).update(
            Text(
                f"last: {earlier[-1].at} via {earlier[-1].target}: {earlier[-1].stats()}"
                if earlier
                else "ctrl+r sends to the target; ctrl+t probes every hop",
                style="dim",
            )
        )

    def _params(self) -> tuple[str, int, float] | None:
        try:
            max_tokens = int(self.query_one("#max-tokens", Input).value)
            temperature = float(self.query_one("#temperature", Input).value)
        except ValueError:
            self.notify("max tokens is a whole number, temperature a number", severity="error")
            return None
        return str(self.query_one("#target", Select).value), max_tokens, temperature

    def action_send(self) -> None:
        prompt = self.query_one("#prompt-text", TextArea).text.strip()
        params = self._params()
        if not prompt or params is None:
            return
        target, max_tokens, temperature = params
        answer = self.query_one("#answer", Log)
        answer.write(f"\n── {target} ─ {prompt[:60]!r}\n")
        stats = self.query_one("#prompt-stats", Static)
        stats.update(Text(f"asking {target} …", style="yellow"))

        def append(piece: str) -> None:
            answer.write(piece)  # pieces are appended as they come: never a redraw of the whole answer

        async def ask() -> None:
            record = await self.session.ask(target, prompt, max_tokens=max_tokens, temperature=temperature,
                                            on_text=append)  # fmt: skip
            self.last = record
            answer.write("\n")
            stats.update(Text(record.stats(), style="bold red" if record.error else "bold green"))

        self.run_worker(ask(), exclusive=True, group="prompt")

    def action_probe_path(self) -> None:
        stats = self.query_one("#prompt-stats", Static)
        stats.update(Text("probing every hop …", style="yellow"))

        async def probe() -> None:
            stats.update(hop_table(await self.session.probe_path()))

        self.run_worker(probe(), exclusive=True, group="prompt")

    def action_export(self) -> None:
        records = self.session.history.load(self.session.plan.profile)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.session.now()))
        path = self.export_dir / f"cpconsole-prompts-{stamp}.md"
        try:
            path.write_text(to_markdown(records), encoding="utf-8")
        except OSError as exc:
            self.notify(f"could not export: {exc}", severity="error")
            return
        self.notify(f"exported {len(records)} prompt(s) to {path}")


def hop_table(checks: list[SmokeCheck]) -> Table:
    table = Table(title="probe path", title_justify="left", box=None, padding=(0, 1))
    for column in ("hop", "status", "latency", "detail"):
        table.add_column(column)
    for check in checks:
        table.add_row(
            check.target,
            Text("ok", style="green") if check.passed else Text("FAIL", style="bold red"),
            f"{check.latency_ms:.0f} ms" if check.latency_ms is not None else "-",
            check.detail[:100],
        )
    return table
