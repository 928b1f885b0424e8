"""Results kept on the jump host across runs: one JSON file per run, under
$XDG_STATE_HOME/cpconsole/<kind>/<profile>/<started>.json (kind: bench, sweep)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .history import state_dir


def stamp() -> str:
    """A run's id and start: local time to the millisecond (two runs in one second stay two)."""
    now = time.time()
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"


def run_path(kind: str, profile: str, started: str, root: Path | None = None) -> Path:
    return (root or state_dir()) / kind / profile / f"{started}.json"


def save(kind: str, profile: str, started: str, record: dict[str, Any], root: Path | None = None) -> Path:
    path = run_path(kind, profile, started, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return path


def records(kind: str, profile: str, root: Path | None = None) -> list[dict[str, Any]]:
    """Every stored run of a profile, oldest first; files that cannot be read as an object are skipped."""
    out = []
    for path in sorted(((root or state_dir()) / kind / profile).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
