"""Start order, readiness gates, failure causes, stop and adopt: the operator's loop."""

from .causes import FailureCause, classify
from .drift import manifest_drift
from .model import Event, EventBus, ProcessView, ProgressNoted, StageChanged, StateChanged
from .orchestrator import Orchestrator
from .stages import Stage, stages
from .states import State

__all__ = [
    "Event",
    "EventBus",
    "FailureCause",
    "Orchestrator",
    "ProcessView",
    "ProgressNoted",
    "Stage",
    "StageChanged",
    "State",
    "StateChanged",
    "classify",
    "manifest_drift",
    "stages",
]
