"""The deployment's journal: every action anyone took on it — who, from where, what, on what, how it
ended and how long it took — as JSON lines in its lock directory on the profile's first node, so it
outlives the jump host and every operator's console sees the same one. An entry is one short write
with O_APPEND (`>>`): lines from two operators never interleave."""

from __future__ import annotations

import calendar
import json
import posixpath
import shlex
import time
from dataclasses import asdict, dataclass

from .orchestrate.lock import lock_dir
from .plan import LaunchPlan
from .remote import RemoteError, Transport
from .remote.scripts import enter_own, shell_path

NAME = "journal.jsonl"


@dataclass(frozen=True)
class JournalEntry:
    at: str  # UTC, ISO 8601
    who: str  # user@host
    via: str  # console or cli
    verb: str
    targets: tuple[str, ...]
    digest: str  # of the profile as it was then
    result: str  # ok, failed, or error: …
    seconds: float

    def epoch(self) -> float | None:
        """When it was written, in seconds since the epoch (None if `at` is not ours)."""
        try:
            return calendar.timegm(time.strptime(self.at, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return None

    def line(self) -> str:
        return json.dumps({**asdict(self), "targets": list(self.targets)}, separators=(",", ":"))

    @classmethod
    def parse(cls, line: str) -> JournalEntry | None:
        """An entry read back; None for a line that is not one (a torn or foreign line is skipped)."""
        try:
            data = json.loads(line)
            return cls(
                str(data["at"]),
                str(data["who"]),
                str(data["via"]),
                str(data["verb"]),
                tuple(map(str, data["targets"])),
                str(data["digest"]),
                str(data["result"]),
                float(data["seconds"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def journal_place(plan: LaunchPlan) -> tuple[str, str]:
    """(node, path) of the deployment's journal: beside its lock."""
    node, directory = lock_dir(plan)
    return node, posixpath.join(directory, NAME)


async def append(transport: Transport, path: str, entry: JournalEntry) -> None:
    """Raises RemoteError when the entry could not be written."""
    directory, file = posixpath.split(path)
    script = f"{enter_own(directory)}\nprintf '%s\\n' {shlex.quote(entry.line())} >> {shlex.quote(file)}"
    result = await transport.run(script, timeout=20)
    if not result.ok:
        why = (result.stderr or result.stdout).decode("utf-8", "replace").strip()[-200:]
        raise RemoteError(transport.node, f"cannot write the journal {path}: {why or f'exit {result.exit_code}'}")


async def read(transport: Transport, path: str, last: int) -> list[JournalEntry]:
    """The last `last` entries, oldest first (none when there is no journal yet)."""
    result = await transport.run(f"tail -n {int(last)} {shell_path(path)} 2>/dev/null || true", timeout=20)
    found = (JournalEntry.parse(line) for line in result.text().splitlines() if line.strip())
    return [entry for entry in found if entry is not None]
