"""A process's states and the only ways between them: `transition(state, trigger)`, from one table.

Every state change of the orchestrator is a trigger looked up here; a trigger that cannot happen
in the current state is a bug of ours and raises."""

from __future__ import annotations

from typing import Literal, get_args

State = Literal[
    "planned", "starting", "healthy", "ready", "stalled", "drifted", "stopped", "exited", "failed", "unknown"
]
Trigger = Literal[
    "found_nothing",  # adoption: no run directory, or nothing runs in it
    "found_running",  # adoption: it runs as the profile says
    "found_drifted",  # adoption: it runs, but not as the profile says now
    "lost_track",  # cannot tell: its node did not answer, its run directory is unreadable, a stop did not settle
    "launched",
    "launch_failed",  # the spawn failed, or its port was taken before it started
    "waiting_for_peer",  # a headless rank's log: its master is not there
    "gate_healthy",  # its stage's health gate answered
    "gate_timed_out",
    "probe_passed",  # the end-to-end request through the proxy answered
    "probe_failed",
    "answering",  # health answered (or a headless rank's master is ready) outside a stage
    "not_answering",  # a ready server's health stopped answering
    "stall_seen",  # telemetry: running requests but no progress
    "moving_again",
    "ended",  # it exited on its own, no known cause
    "died",  # it exited with a known cause, or while its stage waited for it
    "stopped",  # a stop that was asked for
]

STATES: frozenset[State] = frozenset(get_args(State))
UP_STATES: frozenset[State] = frozenset({"starting", "healthy", "ready", "stalled", "drifted"})
DOWN_STATES: frozenset[State] = STATES - UP_STATES  # nothing runs: it may be (re)started
# what the states mean to an operator, each meaning named once
SERVING: frozenset[State] = frozenset({"ready", "stalled"})  # took requests: probed, its error lines alerts
ANSWERING: frozenset[State] = frozenset({"ready", "drifted"})  # serves (a headless rank follows such a master)
BROKEN: frozenset[State] = frozenset({"failed", "exited", "stalled"})  # `status` exits 1
TROUBLE: frozenset[State] = BROKEN | {"unknown", "drifted"}  # shown with its reason, not its last line
NOT_RUNNING: frozenset[State] = frozenset({"planned", "stopped", "exited", "failed"})  # no uptime to show
# adoption's triggers: they tell what was there already, not what an action changed
FOUND: frozenset[Trigger] = frozenset({"found_nothing", "found_running", "found_drifted"})

# trigger → (the states it can happen in, the state it leads to)
MOVES: dict[Trigger, tuple[frozenset[State], State]] = {
    "found_nothing": (STATES, "planned"),
    "found_running": (STATES, "starting"),  # until its health answers
    "found_drifted": (STATES, "drifted"),
    "lost_track": (STATES, "unknown"),
    "launched": (DOWN_STATES, "starting"),
    "launch_failed": (DOWN_STATES, "failed"),
    "waiting_for_peer": (frozenset({"starting", "healthy"}), "stalled"),
    "gate_healthy": (frozenset({"starting", "healthy", "stalled"}), "healthy"),
    "gate_timed_out": (STATES, "failed"),
    "probe_passed": (frozenset({"starting", "healthy"}), "ready"),
    "probe_failed": (STATES, "failed"),
    "answering": (frozenset({"starting", "healthy", "ready"}), "ready"),
    "not_answering": (frozenset({"ready"}), "starting"),
    "stall_seen": (frozenset({"ready", "healthy"}), "stalled"),
    "moving_again": (frozenset({"stalled"}), "ready"),
    "ended": (STATES, "exited"),
    "died": (STATES, "failed"),
    "stopped": (STATES, "stopped"),
}


class IllegalMove(RuntimeError):
    """A trigger in a state where it cannot happen."""


def can(state: State, trigger: Trigger) -> bool:
    return state in MOVES[trigger][0]


def transition(state: State, trigger: Trigger) -> State:
    sources, target = MOVES[trigger]
    if state not in sources:
        raise IllegalMove(f"'{trigger}' cannot happen to a {state} process")
    return target
