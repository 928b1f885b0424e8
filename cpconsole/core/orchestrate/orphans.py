"""Processes of a profile that cpconsole no longer tracks (their run directory was deleted, or
written by an older layout): found on each node by their command line — the program and the
--host/--port the plan gives them — in a session that no adopted process leads, and stopped a
session at a time."""

from __future__ import annotations

import asyncio
import itertools
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from ..plan import LaunchPlan, ProcessPlan
from ..remote import RemoteError, Transport, manifest

SEPARATOR = "--- sessions with a manifest"  # printed in octal: this script's own ps line must not hold it

# every process (-ww: whole command lines, whatever COLUMNS says), then the sessions whose leader
# works in a run directory with a manifest: a deployment tracks those (this one or another), never orphans
LISTING = f"""ps -ww -eo pid=,sid=,args=
printf '\\055\\055\\055 sessions with a manifest\\n'
for s in $(ps -eo sid= | sort -un); do
  d=$(readlink /proc/$s/cwd 2>/dev/null) || continue
  if [ -f "$d"/{manifest.FILE} ]; then echo "$s $d"; fi
done
"""
IDENTIFYING = ("--host", "--port")


@dataclass(frozen=True)
class Orphan:
    node: str
    process: str  # the plan's process it looks like
    session: int  # the session id: its leader's pid (cpconsole starts each process with setsid)
    pids: tuple[int, ...]
    command: str  # the first matching process's command line


def signature(proc: ProcessPlan) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """What a command line must hold to be this process: its program words (what comes before
    the first --flag, without the interpreter) and the identifying flags with their values."""
    argv = proc.argv
    first_flag = next((i for i, word in enumerate(argv) if word.startswith("--")), len(argv))
    words = tuple(w for w in argv[1:first_flag] if not w.startswith("-"))
    pairs = tuple((flag, argv[i + 1]) for i, flag in enumerate(argv[:-1]) if flag in IDENTIFYING)
    return words, pairs


def matches(tokens: list[str], proc: ProcessPlan) -> bool:
    words, pairs = signature(proc)
    adjacent = set(itertools.pairwise(tokens))
    return bool(pairs) and all(w in tokens for w in words) and all(p in adjacent for p in pairs)


def managed_sessions(plan: LaunchPlan, lines: str) -> set[int]:
    """The sessions whose leader's run directory has a manifest (`SID DIR` lines) — except this
    profile's run directories of the layout before profile identities (`<run_dir>/<profile>/<name>`),
    which nothing adopts any more."""
    old_layout = tuple(f"/{plan.profile}/{p.name}" for p in plan.processes)
    managed = set()
    for line in lines.splitlines():
        sid, _, directory = line.partition(" ")
        if sid.isdigit() and not directory.endswith(old_layout):
            managed.add(int(sid))
    return managed


def find(plan: LaunchPlan, listings: Mapping[str, str], tracked: Mapping[str, set[int]]) -> list[Orphan]:
    """From each node's LISTING: the sessions running one of the plan's processes of that node
    that nothing tracks (no adopted leader, no run directory with a manifest), with every process
    of each (its engines and workers too: stopping the session stops them)."""
    found: list[Orphan] = []
    for node, listing in listings.items():
        procs = [p for p in plan.processes if p.node == node]
        processes, _, managed = listing.partition(SEPARATOR)
        skip = tracked.get(node, set()) | managed_sessions(plan, managed)
        rows = [f for f in (line.split(None, 2) for line in processes.splitlines()) if len(f) == 3]
        rows = [f for f in rows if f[0].isdigit() and f[1].isdigit() and int(f[1]) > 1 and int(f[1]) not in skip]
        members: dict[int, list[int]] = {}
        for pid, session, _ in rows:
            members.setdefault(int(session), []).append(int(pid))
        seen: set[int] = set()
        for _, session, command in rows:
            proc = next((p for p in procs if matches(command.split(), p)), None)
            if proc is not None and int(session) not in seen:
                seen.add(int(session))
                found.append(Orphan(node, proc.name, int(session), tuple(members[int(session)]), command))
    return found


async def listings(plan: LaunchPlan, transports: Mapping[str, Transport]) -> tuple[dict[str, str], dict[str, str]]:
    """Every node's LISTING, asked at once; and, per node that could not be asked, why not."""

    async def one(node: str) -> str:
        result = await transports[node].run(LISTING, timeout=20)
        if not result.ok:
            raise RemoteError(node, f"ps failed: {result.text().strip()[-200:]}")
        return result.text()

    names = [n.name for n in plan.nodes]
    answers = await asyncio.gather(*map(one, names), return_exceptions=True)
    listed = {n: a for n, a in zip(names, answers, strict=True) if isinstance(a, str)}
    failed = {n: str(a) or type(a).__name__ for n, a in zip(names, answers, strict=True) if isinstance(a, Exception)}
    return listed, failed


def stop_script(session: int, grace: float) -> str:
    """SIGTERM to every process of the session, SIGKILL to what is left after `grace` seconds;
    prints what remains (nothing when it is all gone)."""
    rounds = max(1, int(grace * 5))
    sid = shlex.quote(str(int(session)))
    return f"""pkill -TERM -s {sid} 2>/dev/null
i=0
while [ $i -lt {rounds} ] && pgrep -s {sid} >/dev/null 2>&1; do sleep 0.2; i=$((i + 1)); done
pkill -KILL -s {sid} 2>/dev/null
sleep 0.2
pgrep -s {sid} || true
"""


async def stop(transports: Mapping[str, Transport], orphans: list[Orphan], grace: float) -> dict[Orphan, str]:
    """Stop each orphan's session; per orphan, "" when nothing of it is left, else why not."""

    async def one(orphan: Orphan) -> str:
        try:
            result = await transports[orphan.node].run(stop_script(orphan.session, grace), timeout=grace + 30)
        except RemoteError as exc:
            return str(exc)
        left = result.text().split()
        return f"still running: {', '.join(left)}" if left else ""

    return dict(zip(orphans, await asyncio.gather(*map(one, orphans)), strict=True))
