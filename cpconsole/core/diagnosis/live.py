"""Failures while serving, read from log lines as they arrive: each known cause on a process and a
place is one finding (first and last seen, how often in the last minute), an alert until its lines
stop for a while. Cheap per line: a line is matched against the catalogue only when it holds one of
its needles (benchmarks/diagnosis.py)."""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..plan import LaunchPlan
from ..telemetry.alerts import Alert
from .catalogue import NEEDLES, Cause, cause_of
from .explain import hint_for
from .place import Place, locate, read_place

MINUTE = 60.0


@dataclass
class Finding:
    process: str
    cause: Cause
    place: Place
    hint: str
    evidence: str
    first_seen: float
    last_seen: float
    count: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # when, within the last minute

    def per_minute(self, at: float) -> int:
        while self.recent and at - self.recent[0] > MINUTE:
            self.recent.popleft()
        return len(self.recent)

    def alert(self, at: float) -> Alert:
        return Alert(
            key=f"log:{self.process}:{self.cause.kind}:{self.place}",
            severity=self.cause.severity,
            source=self.process,
            message=f"{self.cause.summary} ({self.count}×, {self.per_minute(at)}/min)",
            kind=self.cause.kind,
            place=str(self.place),
            hint=self.hint,
            evidence=self.evidence,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
        )


def candidates(lines: list[str]) -> list[str]:
    """The lines holding a needle, in order. Searched in one string rather than line by line: most
    batches hold no needle at all, and str.find runs in C (no needle spans a line break)."""
    blob = "\n".join(lines)
    present = [needle for needle in NEEDLES if needle in blob]
    if not present:
        return []
    starts = list(itertools.accumulate((len(line) + 1 for line in lines), initial=0))
    found: set[int] = set()
    for needle in present:
        at = blob.find(needle)
        while at != -1:
            index = bisect.bisect_right(starts, at) - 1
            found.add(index)
            at = blob.find(needle, starts[index + 1])  # the next line: one hit per line is enough
    return [lines[i] for i in sorted(found)]


class LogWatch:
    """Findings of every process, fed with its new lines (feed) and read as alerts (alerts)."""

    def __init__(self, plan: LaunchPlan, clear_after_s: float = 120.0) -> None:
        self.plan = plan
        self.clear_after_s = clear_after_s
        self._findings: dict[tuple[str, str, Place], Finding] = {}

    def feed(self, process: str, lines: Iterable[str], *, serving: bool, at: float) -> None:
        """Classify new lines of a process. serving: it answers requests (causes normal at start-up,
        like shm_broadcast waits during compilation, count only then; a request's own ValueError
        while serving is not a start-up failure)."""
        for line in candidates(list(lines)):
            cause = cause_of(line)
            if cause is None or not cause.live or cause.when == ("start-up" if serving else "serving"):
                continue
            self._note(process, cause, line, at)

    def _note(self, process: str, cause: Cause, line: str, at: float) -> None:
        proc = self.plan.process(process)
        place = locate(read_place(line), proc, self.plan)
        key = (process, cause.kind, place)
        finding = self._findings.get(key)
        if finding is None:
            hint = hint_for(cause, place, [line], proc, self.plan.node(proc.node).chips)
            finding = self._findings[key] = Finding(process, cause, place, hint, line.strip()[:300], at, at)
        finding.count += 1
        finding.last_seen = at
        finding.evidence = line.strip()[:300]
        finding.recent.append(at)

    def findings(self, at: float) -> list[Finding]:
        """What holds now: seen within clear_after_s."""
        for key in [k for k, f in self._findings.items() if at - f.last_seen > self.clear_after_s]:
            del self._findings[key]
        return list(self._findings.values())

    def alerts(self, at: float) -> list[Alert]:
        return [finding.alert(at) for finding in self.findings(at)]

    def forget(self, process: str) -> None:
        """A process was restarted or stopped: what its old lines said no longer holds."""
        for key in [k for k in self._findings if k[0] == process]:
            del self._findings[key]
