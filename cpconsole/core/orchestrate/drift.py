"""Drift: what differs between a running process's manifest and what the profile launches now."""

from __future__ import annotations

from collections.abc import Sequence

from ..plan import ProcessPlan
from ..remote.manifest import Manifest

# cpconsole's proxy learns its backends at run time (`apply`, through its instance API): the lists
# it was started with are not its drift
from .drain import ADMINISTERED

BACKEND_FLAGS = frozenset({"--prefiller-hosts", "--prefiller-ports", "--decoder-hosts", "--decoder-ports"})


def without_backends(argv: Sequence[str]) -> list[str]:
    """argv without the backend lists (each flag and the values after it, up to the next flag)."""
    out: list[str] = []
    listing = False
    for word in argv:
        if word in BACKEND_FLAGS or (listing and not word.startswith("--")):
            listing = True
            continue
        listing = False
        out.append(word)
    return out


def _by_flag(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The words before the first flag, and each flag with the words after it (joined)."""
    head: list[str] = []
    flags: dict[str, list[str]] = {}
    current: list[str] | None = None
    for word in argv:
        if word.startswith("--"):
            current = flags.setdefault(word, [])
        elif current is None:
            head.append(word)
        else:
            current.append(word)
    return head, {flag: " ".join(values) for flag, values in flags.items()}


def argv_changes(old: Sequence[str], new: Sequence[str]) -> list[str]:
    """Flag by flag: `--max-num-seqs 4 → 8`, `+ --enforce-eager`, `- --seed 1024`; the program
    and its positional words as `- word` / `+ word`."""
    old_head, old_flags = _by_flag(old)
    new_head, new_flags = _by_flag(new)
    lines = [f"- {w}" for w in old_head if w not in new_head] + [f"+ {w}" for w in new_head if w not in old_head]
    for flag in dict.fromkeys([*new_flags, *old_flags]):
        was, now = old_flags.get(flag), new_flags.get(flag)
        if was is None:
            lines.append(f"+ {flag} {now}".rstrip())
        elif now is None:
            lines.append(f"- {flag} {was}".rstrip())
        elif was != now:
            lines.append(f"{flag} {was or '(set)'} → {now or '(set)'}")
    return lines


def manifest_drift(manifest: Manifest, proc: ProcessPlan) -> tuple[str, ...]:
    """What differs between a running process's manifest and what the profile would launch now."""
    lines: list[str] = []
    running_env = dict(manifest.env)
    for key in sorted(set(running_env) | set(proc.env_dict)):
        old, new = running_env.get(key), proc.env_dict.get(key)
        if old != new:
            lines.append(f"env {key}: {old!r} → {new!r}")
    old_argv, new_argv = list(manifest.argv), list(proc.argv)
    if proc.proxy_kind in ADMINISTERED:  # its backends change through its instance API, not its argv
        old_argv, new_argv = without_backends(old_argv), without_backends(new_argv)
    if old_argv != new_argv:
        changed = argv_changes(old_argv, new_argv)
        lines += changed or ["argv: same words in another order"]
    return tuple(lines)
