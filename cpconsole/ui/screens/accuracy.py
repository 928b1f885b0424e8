"""Is it still right? The built-in accuracy check: `s` sends a sample of a public dataset's items
through the proxy (asked first), the progress with the running score as they come back, `x` cancels;
then the run beside the earlier ones and the guide's figure, and the answers it got wrong."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, ProgressBar, Static

from ...core.session import Session
from ...core.smoke.accuracy import QUICK_ITEMS, AccuracyRun, ItemResult, load_accuracy
from ...results import accuracy_rows
from .base import SessionScreen
from .dialogs import ConfirmScreen

DATASET = "gsm8k"


class AccuracyScreen(SessionScreen):
    BINDINGS = [
        Binding("s", "run", "Run check", id="accuracy.run"),
        Binding("x", "cancel", "Cancel", id="accuracy.cancel"),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.runs: list[AccuracyRun] = []  # stored, oldest first
        self.live: tuple[int, int, int] | None = None  # done, right, total of the check running now

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="accuracy-head")
        yield ProgressBar(id="accuracy-progress", show_eta=False)
        yield Static(id="accuracy-table")
        yield Static(id="accuracy-wrong")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "accuracy"
        self.runs = load_accuracy(self.session.plan.profile)
        self._show()

    def action_run(self) -> None:
        if self.live is not None:
            self.notify("a check is running", severity="warning")
            return
        target = self.session.plan.front_door
        question = (
            f"Send the first {QUICK_ITEMS} items of {DATASET} through {target}, eight at a time, up to "
            f"{self.session.checks.accuracy_tokens} tokens each? Real traffic shares the servers with them meanwhile."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.work(self._check(target), group="accuracy")

        self.app.push_screen(ConfirmScreen(question, "Run check"), answered)

    def action_cancel(self) -> None:
        if self.live is None:
            return
        self.workers.cancel_group(self, "accuracy")
        self.notify("accuracy check cancelled: nothing of it is kept")

    async def _check(self, target: str) -> None:
        self.live = (0, 0, QUICK_ITEMS)
        self._show()

        def heard(result: ItemResult, done: int, total: int) -> None:
            right = (self.live[1] if self.live else 0) + result.correct
            self.live = (done, right, total)
            self._show()

        try:
            await self.session.accuracy(
                dataset=DATASET,
                target=target,
                limit=QUICK_ITEMS,
                max_tokens=self.session.checks.accuracy_tokens,
                on_item=heard,
            )
        finally:
            self.live = None
            self.runs = load_accuracy(self.session.plan.profile)
            self._show()

    def _show(self) -> None:
        bar = self.query_one(ProgressBar)
        bar.display = self.live is not None
        if self.live is not None:
            bar.update(total=self.live[2], progress=self.live[0])
        self.draw("#accuracy-head", self._head())
        if not self.runs:
            self.draw("#accuracy-table", Text(""))
            self.draw("#accuracy-wrong", Text(""))
            return
        rows = accuracy_rows(self.runs)
        table = Table(expand=True, box=None, padding=(0, 1))
        for column in rows[0]:
            table.add_column(column, overflow="fold")
        for row in rows[1:]:
            table.add_row(*row)
        self.draw("#accuracy-table", table, key=(len(self.runs), self.runs[-1].started))
        wrong = Text()
        for item in (i for i in self.runs[-1].items if not i.correct):
            got = f"request failed: {item.error}" if item.error else f"got {item.answer or 'no number'}"
            wrong.append(f"{item.id}: expected {item.expected}, {got}\n", style="dim")
        self.draw("#accuracy-wrong", wrong)

    def _head(self) -> Text:
        head = Text()
        if self.live is not None:
            done, right, total = self.live
            score = f", {100 * right / done:.1f} % so far" if done else ""
            head.append(
                f"checking {DATASET} through {self.session.plan.front_door}: {done}/{total}{score}", style="bold"
            )
            head.append(" · x cancels", style="dim")
        elif not self.runs:
            head.append(f"no accuracy check of this profile yet — s sends {QUICK_ITEMS} {DATASET} items", style="dim")
        else:
            newest = self.runs[-1]
            right = sum(i.correct for i in newest.items)
            head.append(f"newest {newest.started}: {newest.dataset} {right}/{newest.samples}, ", style="bold")
            head.append(f"{newest.accuracy:.2f} %", style="bold")
            head.append(" · s runs another", style="dim")
        return head
