"""What the headless verbs print: pure functions from results to text (data in, `str` out).
Every line that comes from a node or a log is made inert for the terminal first."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .core.bundle import Archive
from .core.inventory import Listed, shown_path
from .core.journal import JournalEntry
from .core.notify import Notification, Notifier
from .core.orchestrate import ProcessView, ProgressNoted, StageChanged, StateChanged
from .core.orchestrate.containers import ContainerOutcome, PullProgress
from .core.orchestrate.model import Event, Notice, RemovedProcess
from .core.orchestrate.orphans import Orphan
from .core.orchestrate.states import TROUBLE
from .core.plan import LaunchPlan
from .core.preflight import Check, fold, tally
from .core.ranks import RANK_COLUMNS, Rank
from .core.remote import RunResult
from .core.remote.scripts import OUTPUT_LIMIT
from .core.safetext import terminal_safe, terminal_safe_lines
from .core.smoke.client import percentile
from .core.smoke.suite import SmokeCheck
from .core.telemetry.alerts import Alert


def event_line(event: Event, stamp: str, *, notices_only: bool = False) -> str:
    """One event of a running verb as the lines it prints on stderr ("" for none)."""
    if isinstance(event, Notice):
        return f"{stamp} -- {event.text}\n"
    if notices_only:
        return ""
    if isinstance(event, StateChanged):
        view = event.view
        if view.state == "starting" and view.pid:
            extra = f"pid {view.pid}"
        elif view.state in TROUBLE:
            extra = view.reason
        else:
            extra = ""
        text = f"{stamp} {event.process:<12} {view.label:<10} {extra}\n"
        if view.cause:
            text += f"{stamp} {event.process:<12} cause: {view.cause.summary}\n"
            if view.cause.place:
                text += f"{stamp} {event.process:<12} where: {view.cause.place}\n"
            text += f"{stamp} {event.process:<12} hint:  {view.cause.hint}\n"
        return text
    if isinstance(event, ProgressNoted):
        return f"{stamp} {event.process:<12} {'':<10} {event.text}\n"
    if isinstance(event, StageChanged):
        return f"{stamp} -- stage {event.stage} {event.status}{': ' + event.detail if event.detail else ''}\n"
    return ""


def view_json(plan: LaunchPlan, view: ProcessView) -> dict[str, Any]:
    proc = plan.process(view.name)
    cause = view.cause
    return {
        "name": view.name,
        "role": proc.role,
        "node": proc.node,
        "host": proc.host,
        "state": view.state,
        "label": view.label,
        "pid": view.pid,
        "exit_code": view.exit_code,
        "health_ms": round(view.health_ms, 1) if view.health_ms is not None else None,
        "reason": view.reason,
        "progress": view.progress,
        "last_line": view.last_line,
        "drift": list(view.drift),
        "leftovers": view.leftovers,
        "cause": None if cause is None else cause.as_json(),
    }


def status_json(
    plan: LaunchPlan,
    views: Sequence[ProcessView],
    alerts: Sequence[Alert],
    removed: Sequence[RemovedProcess] = (),
    http: Mapping[str, str] | None = None,
    pending: Sequence[str] = (),
) -> str:
    """`http`: how cpconsole's HTTP reached each node (direct, ssh; auto: not tried); `pending`:
    what `apply` would still do of an edited profile."""
    report = {
        "processes": [view_json(plan, v) for v in views],
        "removed": [{"name": r.name, "node": r.node, "pid": r.handle.pid, "started_by": r.started_by} for r in removed],
        "alerts": [asdict(a) for a in alerts],
        "http": dict(http or {}),
        "pending": list(pending),
    }
    return json.dumps(report, indent=2) + "\n"


def journal_json(entries: Sequence[JournalEntry]) -> str:
    return json.dumps([{**asdict(e), "targets": list(e.targets)} for e in entries], indent=2) + "\n"


def journal_text(entries: Sequence[JournalEntry]) -> str:
    """A line an action: when, who, from where, what on what, how it ended, how long it took."""
    if not entries:
        return "no action recorded yet\n"
    rows = [
        (e.at, e.who, e.via, " ".join([e.verb, *e.targets]), e.result, f"{e.seconds:.1f} s", e.digest[:12])
        for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(terminal_safe(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n" for row in rows
    )


def ranks_json(ranks: Sequence[Rank]) -> str:
    return json.dumps([r.as_json() for r in ranks], indent=2) + "\n"


def ranks_text(ranks: Sequence[Rank]) -> str:
    """Instance by instance, a rank a line; what a failure says of a rank under it."""
    out = []
    for instance in dict.fromkeys(r.instance for r in ranks):
        rows = [r for r in ranks if r.instance == instance]
        cells = [RANK_COLUMNS, *(r.cells() for r in rows)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(RANK_COLUMNS))]
        out.append(f"{instance} ({len(rows)} ranks)\n")
        for row, rank in zip(cells, [None, *rows], strict=True):
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
            if rank is not None and rank.note:
                out.append(f"      {terminal_safe(rank.note)}\n")
    return "".join(out)


def alert_text(alert: Alert) -> str:
    """One alert for a terminal: severity, source, message; a cause read from the logs adds where
    and what to do."""
    text = f"  {alert.severity:<8} {alert.source:<12} {alert.message}\n"
    if alert.place:
        text += f"  {'':<8} {'':<12} where: {alert.place}\n"
    if alert.hint:
        text += f"  {'':<8} {'':<12} hint:  {alert.hint}\n"
    return text


def status_text(
    plan: LaunchPlan,
    views: Sequence[ProcessView],
    alerts: Sequence[Alert] = (),
    last_lines: Mapping[str, Sequence[str]] | None = None,
    removed: Sequence[RemovedProcess] = (),
    http: Mapping[str, str] | None = None,
    pending: Sequence[str] = (),
) -> str:
    """The process table, what still runs that the profile no longer has, then what is wrong with
    each process that has something wrong, the alerts, and the last lines of the failed ones' logs
    (`last_lines`, by process)."""
    rows = [("PROCESS", "ROLE", "NODE", "PID", "STATE", "UPTIME", "HEALTH", "LAST LINE")]
    for view in views:
        proc = plan.process(view.name)
        health = f"{view.health_ms:.0f}ms" if view.health_ms is not None else "-"
        rows.append(
            (
                view.name,
                proc.role,
                proc.node,
                str(view.pid or "-"),
                view.label,
                view.uptime(),
                health,
                terminal_safe(view.last_line)[:60],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    out = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] + "\n"
        for row in rows
    ]
    if pending:
        out.append("\nthe profile changed since these started; `cpconsole apply` would:\n")
        out += [f"  {step}\n" for step in pending]
    tunnelled = [node for node, route in (http or {}).items() if route == "ssh"]
    if tunnelled:
        out.append(f"\nHTTP through SSH to {', '.join(tunnelled)} (their ports are not reached from here)\n")
    if removed:
        out.append("\nremoved from the profile, still running (`down` stops them):\n")
        for r in removed:
            by = f", started by {r.started_by}" if r.started_by else ""
            out.append(f"  {r.name} on {r.node} (pid {r.handle.pid}{by})\n")
    for view in views:
        if view.drift:
            out.append(f"\n{view.name} drifted from the profile:\n" + "".join(f"  {d}\n" for d in view.drift))
            out.append(f"  ({view.reason})\n")
        if view.cause:
            where = f"\n  where: {view.cause.place}" if view.cause.place else ""
            out.append(
                f"\n{view.name}: {view.cause.summary}{where}\n  hint: {view.cause.hint}\n  {view.cause.evidence}\n"
            )
        if view.leftovers:
            out.append(
                f"\n{view.name}: {view.leftovers} process(es) of its group still run after it ended; "
                "`down` stops them\n"
            )
    if alerts:
        out.append("\nALERTS\n" + "".join(alert_text(a) for a in alerts))
    for view in views:
        if view.state == "failed" and view.cause is None:
            out.append(f"\n{view.name}: {view.reason}\n")
        lines = (last_lines or {}).get(view.name)
        if view.state == "failed" and lines:
            out.append(f"--- last {len(lines)} lines of {view.name}\n" + "\n".join(map(terminal_safe, lines)) + "\n")
    return "".join(out)


def exec_text(results: Mapping[str, RunResult | str]) -> str:
    """Each node's output, nodes with identical output grouped; an error string stands for a node
    that could not run it."""
    groups: dict[str, list[str]] = {}
    for node, result in results.items():
        if isinstance(result, str):
            text = f"error: {result}\n"
        else:
            text = terminal_safe_lines(result.text() + result.stderr.decode("utf-8", "replace"))
            if len(result.stdout) >= OUTPUT_LIMIT:
                text += f"… [output cut at {OUTPUT_LIMIT >> 20} MiB]\n"
            if not result.ok:
                text += f"(exit {result.exit_code})\n"
        groups.setdefault(text, []).append(node)
    out = []
    for text, members in groups.items():
        label = f"identical on {len(members)}/{len(results)} nodes" if len(members) > 1 else "1 node"
        out.append(f"---------------- {', '.join(members)} ({label})\n" + text + ("" if text.endswith("\n") else "\n"))
    return "".join(out)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.2f} s"


def smoke_text(checks: Sequence[SmokeCheck]) -> str:
    width = max(len(c.name) for c in checks)
    out = []
    for check in checks:
        out.append(f"{'PASS' if check.passed else 'FAIL'}  {check.name:<{width}}  {check.detail}\n")
        result = check.result
        if result is not None and result.ok:
            prompt = f"{result.prompt_tokens:,}" if result.prompt_tokens is not None else "?"
            if check.kind == "needle" and not check.prompt_tokens_measured:
                prompt += " (estimated: no /tokenize)"
            out.append(
                f"{'':6}{'':<{width}}  prompt {prompt} tokens  TTFT {_ms(result.ttft_s)}  TPOT {_ms(result.tpot_s)}  "
                f"ITL p50 {_ms(percentile(result.itl_s, 0.5))} p99 {_ms(percentile(result.itl_s, 0.99))}  "
                f"{result.output_tokens} tokens  {result.tokens_per_s or 0:.1f} tok/s  E2E {_ms(result.e2e_s)}\n"
            )
    failed = [c.name for c in checks if not c.passed]
    out.append(
        f"smoke: {len(checks) - len(failed)}/{len(checks)} passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + "\n"
    )
    return "".join(out)


def smoke_json(checks: Sequence[SmokeCheck]) -> str:
    passed = all(c.passed for c in checks)
    return json.dumps({"passed": passed, "checks": [c.as_json() for c in checks]}, indent=2) + "\n"


def preflight_text(checks: Sequence[Check], verbose: bool = False) -> str:
    """Folded: one line per identical good result, each problem in full with its hint."""
    lines = [c.line for c in checks] if verbose else fold(checks)
    width = max((len(line.check) for line in lines), default=0)
    out = []
    for line in lines:
        text = line.text.replace("\n", "\n" + " " * (width + 8))
        out.append(
            f"  {line.status:<4}  {line.check:<{width}}  {text}" + (f"\n        hint: {line.hint}" if line.hint else "")
        )
    failed, warned, passed = tally(checks)
    out.append(f"{failed} failed, {warned} warning(s), {passed} passed")
    return "\n".join(out)


def preflight_json(checks: Sequence[Check]) -> str:
    return json.dumps([asdict(c) for c in checks], indent=2)


def watch_header(plan: LaunchPlan, notifier: Notifier) -> str:
    """What `watch` watches and whom it tells."""
    channels = [hook.name for hook in notifier.webhooks]
    if plan.notify.tmux:
        channels.append("tmux (when inside it)")
    if plan.notify.bell:
        channels.append("the bell (on a terminal)")
    told = ", ".join(channels) or "nobody: the profile's notify has no channel"
    return terminal_safe(
        f"watching {plan.profile} ({len(plan.processes)} processes) as {notifier.sender}; "
        f"{plan.notify.min_severity} and up go to: {told}"
    )


def notification_line(note: Notification) -> str:
    return f"{time.strftime('%H:%M:%S', time.localtime(note.at))} {terminal_safe(note.text())}"


def alert_test_text(results: Mapping[str, str | None]) -> str:
    return "".join(
        f"  {terminal_safe(channel)}: {'delivered' if error is None else terminal_safe(error)}\n"
        for channel, error in results.items()
    )


def ls_rows(listed: Sequence[Listed], states: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {
            "path": str(entry.path),
            "name": entry.name,
            "nodes": len(entry.plan.nodes) if entry.plan else None,
            "processes": len(entry.plan.processes) if entry.plan else None,
            "state": state,
            "problem": entry.problem or None,
        }
        for entry, state in zip(listed, states, strict=True)
    ]


def ls_json(listed: Sequence[Listed], states: Sequence[str]) -> str:
    return json.dumps(ls_rows(listed, states), indent=2) + "\n"


def ls_text(listed: Sequence[Listed], states: Sequence[str], cwd: Path) -> str:
    header = ("PROFILE", "NAME", "NODES", "PROCESSES", "STATE")
    rows = [
        (
            shown_path(Path(row["path"]), cwd, Path.home()),
            row["name"],
            str(row["nodes"] or "-"),
            str(row["processes"] or "-"),
            row["state"],
        )
        for row in ls_rows(listed, states)
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in [header, *rows]]
    out += [f"  {entry.path.name}: {entry.problem}\n" for entry in listed if entry.problem]
    return terminal_safe_lines("".join(out))


def orphans_text(found: Sequence[Orphan], unasked: Mapping[str, str]) -> str:
    """The processes of the profile nothing tracks, a session (process group) a line."""
    out = [f"cannot list the processes of {node}: {why}\n" for node, why in unasked.items()]
    if not found:
        return terminal_safe_lines("".join(out) + "no processes of this profile run untracked\n")
    out.append(f"{len(found)} untracked process group(s) of this profile (their run directories are gone):\n")
    for orphan in found:
        out.append(
            f"  {orphan.node:<12} looks like {orphan.process:<12} session {orphan.session:<8} "
            f"{len(orphan.pids)} process(es)  {orphan.command[:100]}\n"
        )
    return terminal_safe_lines("".join(out))


def orphans_stopped_text(results: Mapping[Orphan, str]) -> str:
    return terminal_safe_lines(
        "".join(f"  {o.node:<12} session {o.session:<8} {why or 'stopped'}\n" for o, why in results.items())
    )


def container_outcomes_text(outcomes: Sequence[ContainerOutcome]) -> str:
    return terminal_safe_lines(
        "".join(f"  {'ok  ' if o.done else 'FAIL'}  {o.node:<12} {o.container:<16} {o.what}\n" for o in outcomes)
    )


def pull_progress_line(progress: PullProgress) -> str:
    done = "pulled" if progress.finished else "pulling"
    return terminal_safe_lines(
        f"  {done} {progress.image} on {progress.node}: {progress.done}/{progress.layers} layers\n"
    )


def containers_json(outcomes: Sequence[ContainerOutcome], checks: Sequence[Check]) -> str:
    return json.dumps(
        {"actions": [asdict(o) for o in outcomes], "checks": [asdict(c) for c in checks]},
        indent=2,
    )


def bundle_text(path: Path, archive: Archive) -> str:
    """Where the bundle is, what it holds, then its summary's "What failed" and "Missing" parts."""
    summary = archive.files["SUMMARY.md"].decode()
    parts = {head: body for head, _, body in (p.partition("\n") for p in summary.split("\n## ")[1:])}
    head = f"wrote {path} ({len(archive.files)} files, {path.stat().st_size >> 10} KiB)\n"
    failed = "What failed:\n" + parts.get("What failed", "").strip() + "\n"
    missing = (
        f"Missing ({len(archive.missing)}, see SUMMARY.md):\n" + "\n".join(archive.missing) + "\n"
        if archive.missing
        else ""
    )
    return terminal_safe_lines(head + failed + missing)
