"""Start order, readiness gates, stop and adopt: the operator's loop."""

from .drift import manifest_drift
from .model import Event, EventBus, ProcessView, ProgressNoted, StageChanged, StateChanged
from .orchestrator import Orchestrator
from .stages import Stage, stages
from .states import State

__all__ = [
    "Event",
    "EventBus",
    "Orchestrator",
    "ProcessView",
    "ProgressNoted",
    "Stage",
    "StageChanged",
    "State",
    "StateChanged",
    "manifest_drift",
    "stages",
]
