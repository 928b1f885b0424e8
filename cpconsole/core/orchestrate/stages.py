"""The deployment's stages: one per instance (node-rank 0, then its headless ranks, until its API
servers are healthy), prefill ones first, then the proxy. `up` brings the instances up side by
side, then the proxy, then sends a 1-token request through it; stopping runs the list backwards."""

from __future__ import annotations

from dataclasses import dataclass

from ..names import unknown
from ..plan import LaunchPlan

ROLE_ORDER = ("prefill", "colocated", "decode")


@dataclass(frozen=True)
class Stage:
    name: str
    start: tuple[str, ...]
    gate: tuple[str, ...]  # processes whose HTTP health ends the stage
    timeout: float


def stages(plan: LaunchPlan) -> list[Stage]:
    out: list[Stage] = []
    timeouts = plan.timeouts
    for role in ROLE_ORDER:
        instances = dict.fromkeys(p.instance for p in plan.processes if p.role == role and p.instance)
        for instance in instances:
            members = sorted((p for p in plan.processes if p.instance == instance), key=lambda p: p.node_rank)
            out.append(
                Stage(
                    name=instance,
                    start=tuple(p.name for p in members),
                    gate=tuple(p.name for p in members if p.http_port),
                    timeout=getattr(timeouts, role),
                )
            )
    if any(p.role == "proxy" for p in plan.processes):
        out.append(Stage("proxy", ("proxy",), ("proxy",), timeouts.proxy))
    return out


def instance_of(plan: LaunchPlan, target: str) -> list[str]:
    """Process names a restart of `target` (an instance, a process, or "proxy") must cover: a rank
    cannot restart alone, its whole instance does."""
    for stage in stages(plan):
        if target == stage.name or target in stage.start:
            return list(stage.start)
    names = [name for stage in stages(plan) for name in (stage.name, *stage.start)]
    raise unknown("instance or process", target, names, "instances and processes")
