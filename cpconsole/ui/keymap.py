"""Keys an operator remaps: $XDG_CONFIG_HOME/cpconsole/keymap.yaml maps binding ids (as `?`
shows them) to keys, e.g. `screen.logs: g` or `down: ctrl+d`. A file that cannot be used is
reported and ignored; the defaults stay."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..core.names import did_you_mean


def keymap_path() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "cpconsole" / "keymap.yaml"


def load_keymap(path: Path, known_ids: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """(binding id → key, problems): the usable entries, and a line for each one that is not."""
    if not path.is_file():
        return {}, []
    import yaml  # only when there is a keymap: `cpconsole --help` reads this module too

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")[:65536]) or {}
    except (OSError, UnicodeError, yaml.YAMLError) as exc:
        return {}, [f"{path}: cannot read it ({type(exc).__name__}); default keys"]
    if not isinstance(data, dict):
        return {}, [f"{path}: wants `binding-id: key` lines; default keys"]
    known = sorted(set(known_ids))
    keymap, problems = {}, []
    for binding_id, key in data.items():
        if str(binding_id) not in known:
            problems.append(f"{path}: no binding '{binding_id}' ({did_you_mean(str(binding_id), known, 'ids are')})")
        elif not isinstance(key, str) or not key.strip():
            problems.append(f"{path}: {binding_id} wants a key like 'g' or 'ctrl+d', got {key!r}")
        else:
            keymap[str(binding_id)] = key.strip()
    return keymap, problems
