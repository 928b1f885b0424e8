"""From a launch plan to what the remote layer starts: run directory, script, manifest."""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime

from ..plan import LaunchPlan, ProcessPlan
from ..render import render_script
from .manifest import Manifest
from .types import SpawnSpec


def run_dir(plan: LaunchPlan, proc: ProcessPlan) -> str:
    """<node run_dir>/<profile>-<identity>/<process>, e.g.
    ~/.cache/cpconsole/deepseek-v3.1-cp-1p1d-3f9a01c2/prefill-0."""
    return posixpath.join(plan.node(proc.node).run_dir, plan.run_key, proc.name)


def spawn_spec(plan: LaunchPlan, proc: ProcessPlan, *, now: datetime | None = None, started_by: str = "") -> SpawnSpec:
    started = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    manifest = Manifest(
        process=proc.name,
        profile=plan.profile,
        run_key=plan.run_key,
        digest=plan.digest,
        node=proc.node,
        role=proc.role,
        container=proc.container,
        container_pidfile=proc.container_pidfile,
        container_cli=tuple(proc.container_cli),
        argv=tuple(proc.argv),
        env=proc.env_dict,
        started_at=started,
        started_by=started_by,
    )
    return SpawnSpec(run_dir(plan, proc), render_script(proc), manifest, log_cap=plan.log_max_mb << 20)
