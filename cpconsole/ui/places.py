"""The console's screens in one table: the `:` word (core.cmdline.SCREENS, which also says what
each shows), the key that opens it, its footer label and its class. Bindings, actions, the
command palette and `:` names are all made from this table."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.cmdline import SCREENS
from .keys import DEFAULT_KEYS
from .screens.accuracy import AccuracyScreen
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
    label: str
    screen: type[SessionScreen] | None  # None: the board, which the app keeps
    in_footer: bool = True  # the footer has room for the everyday ones (and Up / Down) only

    @property
    def description(self) -> str:
        return SCREENS[self.name]

    @property
    def binding_id(self) -> str:
        return f"screen.{self.name}"

    @property
    def key(self) -> str:
        """Its default key (keymap.yaml may remap it by binding_id)."""
        return DEFAULT_KEYS[self.binding_id]


PLACES = (
    Place("board", "Board", None),
    Place("logs", "Logs", LogsScreen),
    Place("npus", "NPUs", NpusScreen),
    Place("metrics", "Metrics", MetricsScreen),
    Place("plan", "Plan", PlanScreen),
    Place("prompt", "Prompt", PromptScreen),
    Place("preflight", "Preflight", PreflightScreen),
    Place("alerts", "Alerts", AlertsScreen),
    Place("ranks", "Ranks", RanksScreen),
    Place("journal", "Journal", JournalScreen),
    Place("sweep", "Sweep", SweepScreen, in_footer=False),
    Place("accuracy", "Accuracy", AccuracyScreen, in_footer=False),
)
PLACE = {place.name: place for place in PLACES}
assert list(PLACE) == list(SCREENS), "every screen the command line names has one place here, in order"
