"""What every `cpconsole` verb exits with, and how `status` judges a deployment by it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the light verbs (validate, render, --help) import this module: keep it free of the heavy ones
    from .core.orchestrate.model import ProcessView
    from .core.telemetry.alerts import Alert

EXIT_OK = 0
EXIT_FAILED = 1  # something is broken: a process failed or ended, stalled, left processes behind; a critical alert
EXIT_USAGE = 2  # the profile or the command line is wrong
EXIT_UNREACHABLE = 3  # a node did not answer
EXIT_NOT_READY = 4  # (status) nothing broken, but not every process is up and ready
EXIT_BUSY = 5  # (up, down, restart) another change of the deployment is under way
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it


def exit_code_for(views: Sequence[ProcessView], alerts: Sequence[Alert] = ()) -> int:
    """What `status` answers monitoring with: unreachable first, then broken, then not ready."""
    from .core.orchestrate.states import BROKEN  # only the verbs that judge a deployment get here

    if any(v.state == "unknown" for v in views):
        return EXIT_UNREACHABLE
    if any(v.state in BROKEN or v.leftovers for v in views) or any(a.severity == "critical" for a in alerts):
        return EXIT_FAILED
    if any(not (v.state == "ready" or (v.state == "drifted" and v.health_ms is not None)) for v in views):
        return EXIT_NOT_READY
    return EXIT_OK
