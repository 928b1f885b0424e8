"""The `:` command line: a one-line modal at the bottom with completion from the plan's names."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input

from ...core.cmdline import completions
from ...core.plan import LaunchPlan


class PlanSuggester(Suggester):
    def __init__(self, plan: LaunchPlan) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.plan = plan

    async def get_suggestion(self, value: str) -> str | None:
        found = completions(value, self.plan)
        return found[0] if found and value else None


class CommandLine(ModalScreen[str | None]):
    """Answers with the typed text on enter, None on esc; tab/right accepts the suggestion."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, plan: LaunchPlan) -> None:
        super().__init__()
        self.plan = plan

    def compose(self) -> ComposeResult:
        yield Input(placeholder=":help lists the commands", suggester=PlanSuggester(self.plan), id="command")

    def on_key(self, event: events.Key) -> None:
        """Keys typed right after `:`, delivered to this screen before its input held the focus:
        the input's, in order, none lost. (A key the input had would not reach here: it stops
        what it types, and enter is its binding.)"""
        field = self.query_one("#command", Input)
        if event.is_printable and event.character:
            field.focus()
            field.insert_text_at_cursor(event.character)
            event.stop()
        elif event.key == "enter":
            event.stop()
            self.dismiss(field.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
