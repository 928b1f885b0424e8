"""Modal questions and read-outs: confirm a destructive action, what to do on quit, help, the
output of `:exec`. Each answers with a plain value; the app decides what happens."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from ...core.cmdline import USAGE
from ...core.remote import RunResult


class ConfirmScreen(ModalScreen[bool]):
    """y confirms; n, esc or anything else declines. The default button is the safe one."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question), classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ChoiceScreen(ModalScreen[str]):
    """A question with a few answers, each on a key; the first is the default (enter), the last
    is what esc answers."""

    BINDINGS = [Binding("escape", "answer_last", "Cancel", show=False)]

    def __init__(self, question: str, choices: list[tuple[str, str, str, str]]) -> None:
        """choices: (answer, key, label, button variant), the default first, the way out last."""
        super().__init__()
        self.question = question
        self.choices = choices

    def on_key(self, event: events.Key) -> None:
        answer = next((a for a, key, _, _ in self.choices if key == event.key), None)
        if answer is not None:
            event.stop()
            self.dismiss(answer)

    def action_answer_last(self) -> None:
        self.dismiss(self.choices[-1][0])

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question), classes="question")
            with Horizontal(classes="buttons"):
                for answer, key, label, variant in self.choices:
                    yield Button(f"{label} ({key})", variant=variant, id=answer)  # type: ignore[arg-type]

    def on_mount(self) -> None:
        self.query_one(f"#{self.choices[0][0]}", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or self.choices[-1][0])


def quit_screen(running: list[str]) -> ChoiceScreen:
    """Processes run on: leave them (default), stop them all first, or stay."""
    return ChoiceScreen(
        f"{len(running)} process(es) still running: {', '.join(running)}.\n"
        "They keep serving after the console quits; the next console adopts them.",
        [
            ("leave", "l", "Leave running", "primary"),
            ("stop", "s", "Stop all", "error"),
            ("cancel", "c", "Cancel", "default"),
        ],
    )


def preflight_first_screen() -> ChoiceScreen:
    """Before the first `up` of a session: check the nodes first (default), start now, or stay."""
    return ChoiceScreen(
        "Check every node before starting? Preflight takes seconds; a DOWN NPU link, a taken port or "
        "a float16 config otherwise shows up minutes into model loading.",
        [
            ("preflight", "p", "Preflight, then start", "primary"),
            ("start", "s", "Start now", "warning"),
            ("cancel", "c", "Cancel", "default"),
        ],
    )


class HelpScreen(ModalScreen[None]):
    """The keys of the screen underneath, the app's keys, and the `:` commands."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, title: str, keys: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.keys = keys  # (key as shown, what it does, binding id for keymap.yaml)

    def compose(self) -> ComposeResult:
        keys = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
        keys.add_column(style="bold cyan", no_wrap=True)
        keys.add_column()
        keys.add_column(style="dim")  # the id a keymap.yaml names it by
        for key, description, binding_id in self.keys:
            keys.add_row(key, description, binding_id)
        commands = Text("\nCommands (type : first)\n", style="bold")
        for usage in USAGE.values():
            commands.append(f"  {usage}\n", style="")
        commands.append("\nctrl+p opens the command palette: processes and actions by name.\n", style="dim")
        with VerticalScroll(classes="dialog wide"):
            yield Static(Group(Text(f"{self.title_text}\n", style="bold"), keys, commands))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class ExecScreen(ModalScreen[None]):
    """What `:exec` printed on each node, exit code first."""

    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, argv: tuple[str, ...], results: dict[str, RunResult | str]) -> None:
        super().__init__()
        self.argv = argv
        self.results = results

    def compose(self) -> ComposeResult:
        text = Text()
        text.append(f"$ {' '.join(self.argv)}\n", style="bold")
        for node, result in self.results.items():
            if isinstance(result, str):
                text.append(f"\n── {node}: failed: {result}\n", style="bold red")
                continue
            style = "bold green" if result.ok else "bold red"
            text.append(f"\n── {node}: exit {result.exit_code}\n", style=style)
            text.append(result.text())
            if result.stderr:
                text.append(result.stderr.decode("utf-8", "replace"), style="red")
        with VerticalScroll(classes="dialog wide"):
            yield Static(text)

    def action_close(self) -> None:
        self.dismiss(None)
