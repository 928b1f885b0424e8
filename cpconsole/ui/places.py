"""The console's screens in one table: the `:` word (core.cmdline.SCREENS, which also says what
each shows), the key that opens it, its footer label and its class. Bindings, actions, the
command palette and `:` names are all made from this table."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.cmdline import SCREENS
from .screens.alerts import AlertsScreen
from .screens.base import SessionScreen
from .screens.journal import JournalScreen
from .screens.logs import LogsScreen
from .screens.metrics import MetricsScreen
from .screens.npus import NpusScreen
from .screens.plan import PlanScreen
from .screens.preflight import PreflightScreen
from .screens.prompt import PromptScreen
from .screens.ranks import RanksScreen
from .screens.sweep import SweepScreen


@dataclass(frozen=True)
class Place:
    name: str  # the `:` word, the action's argument and the binding's id (screen.<name>)
    key: str
    label: str
    screen: type[SessionScreen] | None  # None: the board, which the app keeps
    in_footer: bool = True  # the footer has room for the everyday ones (and Up / Down) only

    @property
    def description(self) -> str:
        return SCREENS[self.name]


PLACES = (
    Place("board", "1", "Board", None),
    Place("logs", "2", "Logs", LogsScreen),
    Place("npus", "3", "NPUs", NpusScreen),
    Place("metrics", "4", "Metrics", MetricsScreen),
    Place("plan", "5", "Plan", PlanScreen),
    Place("prompt", "6", "Prompt", PromptScreen),
    Place("preflight", "7", "Preflight", PreflightScreen),
    Place("alerts", "8", "Alerts", AlertsScreen),
    Place("ranks", "9", "Ranks", RanksScreen),
    Place("journal", "0", "Journal", JournalScreen),
    Place("sweep", "w", "Sweep", SweepScreen, in_footer=False),
)
PLACE = {place.name: place for place in PLACES}
assert list(PLACE) == list(SCREENS), "every screen the command line names has one place here, in order"
