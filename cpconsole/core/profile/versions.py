"""Release versions as vLLM and vllm-ascend spell them, in order: 0.13.0 < 0.21.0rc1 < 0.21.0."""

from __future__ import annotations

import re

_VERSION_RE = re.compile(r"^v?(\d+(?:\.\d+)*)(?:[.-]?(dev|a|b|rc)(\d*))?")
_PRE_RANK = {"dev": -4, "a": -3, "b": -2, "rc": -1}


def version_key(text: str) -> tuple[int, ...] | None:
    """'0.25.1rc1' → (0, 25, 1, -1, 1); a final release sorts after its release candidates."""
    match = _VERSION_RE.match(text.strip())
    if not match:
        return None
    release = [int(p) for p in match.group(1).split(".")]
    release += [0] * (3 - len(release))
    pre = (_PRE_RANK[match.group(2)], int(match.group(3) or 0)) if match.group(2) else (0, 0)
    return (*release[:3], *pre)


def at_least(version: str | None, floor: str) -> bool:
    if version is None:
        return False
    key, floor_key = version_key(version), version_key(floor)
    return key is not None and floor_key is not None and key >= floor_key
