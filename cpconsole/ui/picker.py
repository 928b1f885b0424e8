"""`cpconsole` with no profile: pick one of the profiles this jump host knows. Each row shows
whether its deployment runs as soon as its nodes have answered."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from ..core.inventory import Listed, running_of, shown_path
from ..core.safetext import terminal_safe

COLUMNS = ("profile", "name", "nodes", "processes", "state")


def state_text(state: str) -> Text:
    style = "green" if state.endswith("running") and not state.startswith("not") else "dim"
    return Text(state, style="red" if state.startswith(("unknown", "invalid")) else style)


class PickerApp(App[Path | None]):
    """Returns the chosen profile's path (None when left with q or escape)."""

    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "cpconsole"
    SUB_TITLE = "pick a profile"
    BINDINGS = [Binding("q,escape", "quit", "Quit", id="picker.quit")]  # enter on a row opens it

    def __init__(self, listed: list[Listed], dirs: list[Path], *, ask_nodes: bool = True) -> None:
        super().__init__()
        self.listed = listed
        self.dirs = dirs
        self.ask_nodes = ask_nodes
        self.states: dict[Path, str] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        where = " and ".join(shown_path(d, Path.cwd(), Path.home()) for d in self.dirs)
        yield Static(terminal_safe(f"profiles in {where}" if self.listed else f"no profiles (*.yaml) in {where}"))
        yield DataTable(id="profiles", cursor_type="row")
        yield Static(id="why")  # why the profile picked does not open
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        for entry in self.listed:
            plan = entry.plan
            state = "invalid" if plan is None else ("asking its nodes…" if self.ask_nodes else "not asked")
            cells = (len(plan.nodes), len(plan.processes)) if plan else ("-", "-")
            shown = terminal_safe(shown_path(entry.path, Path.cwd(), Path.home()))
            table.add_row(shown, entry.name, *map(str, cells), state_text(state), key=str(entry.path))
            self.states[entry.path] = state
            if plan is not None and self.ask_nodes:
                self.run_worker(self._ask(entry), group="asking the nodes", exit_on_error=False)

    async def _ask(self, entry: Listed) -> None:
        assert entry.plan is not None
        state = await running_of(entry.plan)
        self.states[entry.path] = state
        self.query_one(DataTable).update_cell(str(entry.path), "state", state_text(state))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        entry = next(e for e in self.listed if str(e.path) == event.row_key.value)
        if entry.plan is None:
            self.query_one("#why", Static).update(Text(terminal_safe(entry.problem), style="red"))
            return
        self.exit(entry.path)
