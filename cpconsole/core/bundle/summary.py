"""SUMMARY.md, the bundle's first page: what failed, where, the cause and what to do, the timeline
of the window, then what the bundle holds and what it could not get."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..journal import JournalEntry
from ..orchestrate.model import ProcessView
from ..orchestrate.states import TROUBLE
from ..plan import LaunchPlan
from ..telemetry.alerts import AlertRecord


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    def holds(self, at: float | None) -> bool:
        return at is not None and self.start <= at <= self.end


def utc(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary(
    plan: LaunchPlan,
    made_at: float,
    made_by: str,
    window: Window,
    views: Mapping[str, ProcessView],
    alerts: Sequence[AlertRecord],
    journal: Sequence[JournalEntry],
    files: Mapping[str, int],
    missing: Sequence[str],
    cut: Sequence[str],
) -> str:
    out = [
        f"# Incident bundle: {plan.profile}",
        "",
        f"Made {utc(made_at)} by {made_by}; window {utc(window.start)} – {utc(window.end)}; "
        f"profile digest {plan.digest[:12]}, deployment {plan.run_key}.",
        "",
        "## What failed",
        "",
    ]
    troubled = [v for v in views.values() if v.state in TROUBLE]
    if not troubled:
        out.append("Nothing: every process is planned, stopped or running as the profile says.")
    for view in troubled:
        proc = plan.process(view.name)
        said = f"exit {view.exit_code}" if view.exit_code is not None else ""
        out.append(f"- **{view.name}** ({proc.role}) on {proc.node}: {view.state}" + (f", {said}" if said else ""))
        if view.reason and (view.cause is None or view.reason != view.cause.summary):
            out.append(f"  - {view.reason}")
        if view.cause is not None:
            out.append(f"  - cause: {view.cause.summary} ({view.cause.kind})")
            if view.cause.place:
                out.append(f"  - where: {view.cause.place}")
            out.append(f"  - what to do: {view.cause.hint}")
            out.append(f"  - evidence: `{view.cause.evidence}`")
        out.append(f"  - log: processes/{view.name}/log.txt")
    out += ["", "## Processes", "", "| process | node | state | started | pid |", "| --- | --- | --- | --- | --- |"]
    out += [
        f"| {v.name} | {plan.process(v.name).node} | {v.state} | {v.started_at or ''} | {v.pid or ''} |"
        for v in views.values()
    ]
    out += ["", "## Timeline", ""]
    events = [(r.raised_at, f"alert {r.alert.severity}: {r.alert.message}") for r in alerts]
    events += [(r.cleared_at, f"alert cleared: {r.alert.message}") for r in alerts if r.cleared_at is not None]
    events += [
        (at, " ".join([e.verb, *e.targets]) + f" by {e.who} via {e.via}: {e.result}")
        for e in journal
        if (at := e.epoch()) is not None
    ]
    events += [(at, f"{v.name} started") for v in views.values() if (at := v.started_epoch) is not None]
    shown = sorted((at, text) for at, text in events if window.holds(at))
    out += [f"- {utc(at)} {_cell(text)}" for at, text in shown] or [
        "Nothing happened in the window that cpconsole saw."
    ]
    out += ["", "## In this bundle", "", "| file | bytes |", "| --- | ---: |"]
    out += [f"| {name} | {size} |" for name, size in sorted(files.items())]
    out += ["", "## Missing", ""]
    out += [f"- {_cell(m)}" for m in missing] or ["Nothing."]
    if cut:
        out += ["", "## Cut", ""] + [f"- {_cell(c)}" for c in cut]
    return "\n".join(out) + "\n"
