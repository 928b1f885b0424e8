"""The process state machine, as a table: every (state, trigger) pair either leads where the
table says or is refused; and the moves an operator relies on, spelled out."""

from __future__ import annotations

import itertools
from typing import get_args

import pytest

from cpconsole.core.orchestrate.states import MOVES, STATES, UP_STATES, IllegalMove, State, Trigger, transition

TRIGGERS: tuple[Trigger, ...] = get_args(Trigger)

# (from, trigger) → to: what the console shows after each thing that happens
EXPECTED: list[tuple[State, Trigger, State]] = [
    ("planned", "launched", "starting"),
    ("starting", "gate_healthy", "healthy"),
    ("healthy", "probe_passed", "ready"),
    ("starting", "waiting_for_peer", "stalled"),  # a headless rank without its master
    ("stalled", "gate_healthy", "healthy"),  # … which joined after all
    ("ready", "not_answering", "starting"),
    ("starting", "answering", "ready"),
    ("ready", "stall_seen", "stalled"),
    ("stalled", "moving_again", "ready"),
    ("ready", "ended", "exited"),
    ("ready", "died", "failed"),
    ("ready", "stopped", "stopped"),
    ("failed", "launched", "starting"),  # restart after a failure
    ("stopped", "launched", "starting"),
    ("unknown", "found_running", "starting"),  # its node answers again
    ("ready", "found_drifted", "drifted"),  # the profile was edited
    ("ready", "lost_track", "unknown"),
]
REFUSED: list[tuple[State, Trigger]] = [
    ("ready", "launched"),  # never a second copy of a running process
    ("drifted", "launched"),
    ("stalled", "launched"),
    ("planned", "answering"),  # nothing runs: nothing can answer
    ("stopped", "stall_seen"),
    ("exited", "probe_passed"),
    ("drifted", "stall_seen"),  # a drifted process keeps saying it drifted
    ("ready", "moving_again"),
]


@pytest.mark.parametrize(("before", "trigger", "after"), EXPECTED)
def test_the_moves_an_operator_relies_on(before: State, trigger: Trigger, after: State) -> None:
    assert transition(before, trigger) == after


@pytest.mark.parametrize(("before", "trigger"), REFUSED)
def test_moves_that_cannot_happen_are_refused(before: State, trigger: Trigger) -> None:
    with pytest.raises(IllegalMove, match=f"'{trigger}' cannot happen to a {before} process"):
        transition(before, trigger)


def test_every_pair_follows_the_table_and_every_state_is_used() -> None:
    assert set(MOVES) == set(TRIGGERS)
    for state, trigger in itertools.product(sorted(STATES), TRIGGERS):
        sources, target = MOVES[trigger]
        if state in sources:
            assert transition(state, trigger) == target
        else:
            with pytest.raises(IllegalMove):
                transition(state, trigger)
    reached = {target for _, target in MOVES.values()}
    assert reached == STATES  # no dead state: each is where some trigger leads
    assert UP_STATES < STATES and "listening" not in STATES
