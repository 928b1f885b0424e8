"""Start order, readiness gates, failure causes, stop and adopt: the operator's loop."""

from .causes import FailureCause, classify
from .model import Event, ProcessView, ProgressNoted, StageChanged, State, StateChanged
from .orchestrator import EventBus, Orchestrator, manifest_drift
from .stages import Stage, stages, stop_order

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
    "stop_order",
]
