"""The profiles this jump host knows (./profiles and the user's config directory) and whether each
deployment runs, read from the manifests on its nodes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .orchestrate import Orchestrator
from .orchestrate.states import UP_STATES
from .plan import LaunchPlan, build_plan
from .profile import ProfileError, load_profile
from .remote import RemoteError, transport_for


def profile_dirs(cwd: Path, environ: Mapping[str, str] = os.environ) -> list[Path]:
    config = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [cwd / "profiles", config / "cpconsole" / "profiles"]


def shown_path(path: Path, cwd: Path, home: Path) -> str:
    """As an operator would type it: relative to the working directory, else from ~, else whole."""
    for base, prefix in ((cwd, ""), (home, "~/")):
        if path.is_relative_to(base):
            return prefix + str(path.relative_to(base))
    return str(path)


@dataclass(frozen=True)
class Listed:
    path: Path
    plan: LaunchPlan | None = None
    problem: str = ""  # why it does not load: its first finding

    @property
    def name(self) -> str:
        return self.plan.profile if self.plan else "-"


def listed_profiles(dirs: list[Path]) -> list[Listed]:
    """Every *.yaml / *.yml in the directories (not below), each loaded and planned, or why not."""
    found = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
            try:
                found.append(Listed(path, build_plan(load_profile(path))))
            except ProfileError as exc:
                found.append(Listed(path, problem=str(exc.findings[0]) if exc.findings else "invalid"))
    return found


async def running_of(plan: LaunchPlan, timeout: float = 20.0) -> str:
    """`3/4 running`, `not running`, or why it is not known (a node that does not answer)."""
    transports = {node.name: transport_for(node) for node in plan.nodes}
    orchestrator = Orchestrator(plan, transports)
    try:
        await asyncio.wait_for(orchestrator.adopt(), timeout)
        views = orchestrator.views.values()
        unknown = sorted({plan.process(v.name).node for v in views if v.state == "unknown"})
        if unknown:
            return f"unknown: {', '.join(unknown)} did not answer"
        running = sum(v.state in UP_STATES for v in views)
        return f"{running}/{len(views)} running" if running else "not running"
    except (TimeoutError, RemoteError, OSError) as exc:
        return f"unknown: {exc or type(exc).__name__}"
    finally:
        await orchestrator.close()
        await asyncio.gather(*(t.close() for t in transports.values()), return_exceptions=True)
