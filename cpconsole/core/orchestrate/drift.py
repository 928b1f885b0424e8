"""Drift: what differs between a running process's manifest and what the profile launches now."""

from __future__ import annotations

from ..plan import ProcessPlan
from ..remote.manifest import Manifest


def manifest_drift(manifest: Manifest, proc: ProcessPlan) -> tuple[str, ...]:
    """What differs between a running process's manifest and what the profile would launch now."""
    lines: list[str] = []
    running_env = dict(manifest.env)
    for key in sorted(set(running_env) | set(proc.env_dict)):
        old, new = running_env.get(key), proc.env_dict.get(key)
        if old != new:
            lines.append(f"env {key}: {old!r} → {new!r}")
    old_argv, new_argv = list(manifest.argv), list(proc.argv)
    if old_argv != new_argv:
        removed = [w for w in old_argv if w not in new_argv]
        added = [w for w in new_argv if w not in old_argv]
        lines += [f"- {w}" for w in removed] + [f"+ {w}" for w in added]
        if not removed and not added:
            lines.append("argv: same words in another order")
    return tuple(lines)
