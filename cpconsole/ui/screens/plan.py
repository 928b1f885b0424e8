"""What runs, exactly: the rendered launch script of every process, the profile's warnings, and
for adopted processes what differs from their manifest."""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from ...core.render import render_script
from ...core.session import Session
from .base import SessionScreen


class PlanScreen(SessionScreen):
    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="plan"):
            yield Static(id="findings")
            for proc in self.session.plan.processes:
                yield Static(
                    Text(f"{proc.name}  ({proc.role} on {proc.node}, {proc.host})", style="bold"), classes="section"
                )
                yield Static(id=f"drift-{proc.name}", classes="drift")
                yield Static(Syntax(render_script(proc), "bash", word_wrap=True, theme="ansi_dark"))
        yield Footer(compact=True)

    def on_mount(self) -> None:
        findings = Text()
        for line in self.session.findings:
            findings.append(line + "\n", style="yellow")
        self.query_one("#findings", Static).update(findings or Text("profile: no warnings", style="dim"))
        self.refresh_from(self.session)

    def refresh_from(self, session: Session) -> None:
        processes = session.view().processes
        for proc in session.plan.processes:
            drift = processes[proc.name].drift
            text = (
                Text("drifted from the running process:\n" + "".join(f"  {d}\n" for d in drift), style="magenta")
                if drift
                else Text()
            )
            self.draw(f"#drift-{proc.name}", text)
