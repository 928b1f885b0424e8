"""What broke, where and what to do: known failures read from vLLM-Ascend log lines, at start-up
(explain) and while serving (LogWatch)."""

from .catalogue import CAUSES, Cause, cause_of
from .explain import FailureCause, classify, explain
from .live import Finding, LogWatch
from .place import LinePlace, Place, locate, read_place

__all__ = [
    "CAUSES",
    "Cause",
    "FailureCause",
    "Finding",
    "LinePlace",
    "LogWatch",
    "Place",
    "cause_of",
    "classify",
    "explain",
    "locate",
    "read_place",
]
