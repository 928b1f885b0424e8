"""The prompt pane: write a prompt, pick a target and parameters, watch the answer stream in, read
TTFT/TPOT/ITL under it. ctrl+r sends, ctrl+t runs the probe path (a 1-token request per hop), ctrl+n
the long-context needle test at three depths, ctrl+b `vllm bench serve` (its output streams below,
then the runs side by side), ctrl+e exports the history as Markdown. Every request is kept in the
history across runs."""

from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Input, Label, Select, Static, TextArea

from ...core.remote import RemoteError
from ...core.session import ReadOnly, Session
from ...core.smoke.bench import load_runs
from ...core.smoke.history import PromptRecord, to_markdown
from ...core.smoke.suite import SmokeCheck
from ...results import bench_table
from ..widgets.answer import AnswerView
from .base import SessionScreen
from .dialogs import ConfirmScreen


class PromptScreen(SessionScreen):
    BINDINGS = [
        Binding("ctrl+r", "send", "Send", priority=True),
        Binding("ctrl+t", "probe_path", "Probe path", priority=True),
        Binding("ctrl+n", "needle", "Needle sweep", priority=True),
        Binding("ctrl+b", "bench", "Bench", priority=True),
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
            front = self.session.plan.front_door
            yield Select([(t, t) for t in self.targets], value=front, allow_blank=False, id="target")
            yield Label("max tokens")
            yield Input("256", id="max-tokens", type="integer")
            yield Label("temperature")
            yield Input("0", id="temperature", type="number")
        yield TextArea(id="prompt-text", soft_wrap=True)
        yield Static(id="prompt-stats")
        yield AnswerView(id="answer")
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
        answer = self.query_one("#answer", AnswerView)
        answer.append(f"\n── {target} ─ {prompt[:60]!r}\n")
        stats = self.query_one("#prompt-stats", Static)
        stats.update(Text(f"asking {target} …", style="yellow"))

        def append(piece: str) -> None:
            answer.append(piece)  # pieces are appended as they come, wrapped at the pane's edge

        async def ask() -> None:
            record = await self.session.ask(
                target, prompt, max_tokens=max_tokens, temperature=temperature, on_text=append
            )
            self.last = record
            answer.append("\n")
            stats.update(Text(record.stats(), style="bold red" if record.error else "bold green"))

        self.work(ask(), group="prompt")

    def action_probe_path(self) -> None:
        stats = self.query_one("#prompt-stats", Static)
        stats.update(Text("probing every hop …", style="yellow"))

        async def probe() -> None:
            stats.update(hop_table(await self.session.probe_path()))

        self.work(probe(), group="prompt")

    def action_needle(self) -> None:
        target = str(self.query_one("#target", Select).value)
        tokens = self.session.checks.needle_tokens or 4096
        stats = self.query_one("#prompt-stats", Static)
        stats.update(Text(f"needle test through {target}: {tokens} tokens at 10 %, 50 %, 90 % …", style="yellow"))

        async def sweep() -> None:
            stats.update(depth_table(await self.session.needle_sweep(target)))

        self.work(sweep(), group="prompt")

    def action_bench(self) -> None:
        settings = self.session.checks.bench
        question = (
            f"Run vllm bench serve through the {settings.target}: {settings.num_prompts} prompts of "
            f"{settings.input_len} tokens in, {settings.output_len} out? It loads the deployment."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.work(self._bench(), group="prompt")

        self.app.push_screen(ConfirmScreen(question, "Run bench"), answered)

    async def _bench(self) -> None:
        answer, stats = self.query_one("#answer", AnswerView), self.query_one("#prompt-stats", Static)
        answer.append("\n── vllm bench serve\n")
        stats.update(Text("vllm bench serve is running; its output streams below …", style="yellow"))
        try:
            run = await self.session.bench(answer.append_line)
        except (RemoteError, ReadOnly) as exc:
            stats.update(Text(f"bench: {exc}", style="bold red"))
            return
        stats.update(Text(bench_table(load_runs(self.session.plan.profile)[-5:], mark=run.started)))

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


def depth_table(checks: list[SmokeCheck]) -> Table:
    """The needle test per depth: did the passphrase come back, from how long a prompt, how fast."""
    table = Table(title="needle test", title_justify="left", box=None, padding=(0, 1))
    for column in ("depth", "prompt tokens", "result", "TTFT", "E2E", "detail"):
        table.add_column(column)
    for check in checks:
        result = check.result
        tokens = str(result.prompt_tokens) if result and result.prompt_tokens else "-"
        table.add_row(
            f"{check.depth:.0%}" if check.depth is not None else "-",
            tokens + ("" if check.prompt_tokens_measured else " (estimated)"),
            Text("found", style="green") if check.passed else Text("FAIL", style="bold red"),
            f"{result.ttft_s:.2f} s" if result and result.ttft_s is not None else "-",
            f"{result.e2e_s:.2f} s" if result and result.e2e_s is not None else "-",
            check.detail[:80],
        )
    return table


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
