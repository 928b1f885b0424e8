"""`apply`: what the edited profile asks of what runs, as steps carried out one at a time — new
instances started and handed to cpconsole's proxy (through its instance API, never by restarting
it), changed ones restarted (each drained first while another instance of its role serves),
instances the profile no longer has taken out of the proxy and stopped. A pure plan here; the
orchestrator carries it out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..plan import LaunchPlan
from .drain import ROLES, Backend
from .model import ProcessView, RemovedProcess
from .stages import stages
from .states import DOWN_STATES

Action = Literal["start", "route", "restart", "unroute", "stop"]
ORDER: tuple[Action, ...] = ("start", "route", "restart", "unroute", "stop")  # capacity first, removal last


@dataclass(frozen=True)
class Step:
    action: Action
    target: str  # an instance (or "proxy"), a backend "role host:port", or a removed process
    processes: tuple[str, ...] = ()
    why: str = ""
    edited: bool = True  # asked by an edit of the profile (not a process that ended: that is `status`'s)

    @property
    def text(self) -> str:
        return f"{self.action} {self.target}" + (f": {self.why}" if self.why else "")

    @property
    def backend(self) -> Backend:
        role, _, instance = self.target.partition(" ")
        return Backend(role, instance)


def wanted_backends(plan: LaunchPlan) -> set[Backend]:
    """What the profile's proxy routes to: every prefill and decode API server."""
    return {Backend(p.role, f"{p.address}:{p.http_port}") for p in plan.processes if p.http_port and p.role in ROLES}


def changes(
    plan: LaunchPlan,
    views: Mapping[str, ProcessView],
    removed: Mapping[str, RemovedProcess],
    routed: set[Backend] | None,
) -> list[Step]:
    """The steps from what runs (`views`, `removed`; `routed`: the backends cpconsole's proxy routes
    to now, None when it does not run) to what the profile says, in the order they are taken."""
    steps: list[Step] = []
    for stage in stages(plan):
        names = stage.start
        down = [n for n in names if views[n].state in DOWN_STATES]
        drifted = [(n, views[n].drift) for n in names if views[n].drift]
        if len(down) == len(names):
            never = all(views[n].state == "planned" for n in names)
            steps.append(Step("start", stage.name, names, "new in the profile" if never else "not running", never))
        elif drifted:
            name, lines = drifted[0]
            more = sum(len(d) for _, d in drifted) - 1
            steps.append(
                Step("restart", stage.name, names, f"{name} {lines[0]}" + (f" and {more} more" if more else ""))
            )
        elif down:
            why = f"{len(down)} of its {len(names)} processes not running"
            steps.append(Step("restart", stage.name, names, why, edited=False))
    if routed is not None:
        wanted = wanted_backends(plan)
        steps += [
            Step("route", f"{b.role} {b.instance}", why="new in the profile") for b in sorted(wanted - routed, key=str)
        ]
        steps += [
            Step("unroute", f"{b.role} {b.instance}", why="not in the profile")
            for b in sorted(routed - wanted, key=str)
        ]
    steps += [
        Step("stop", name, (name,), f"removed from the profile (on {r.node})") for name, r in sorted(removed.items())
    ]
    return sorted(steps, key=lambda step: ORDER.index(step.action))
