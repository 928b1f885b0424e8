"""Measured results as text for a terminal, a ticket or a script: the context-length sweep (a
table, and TTFT against length as a chart, with earlier sweeps and the guide's figure beside it),
the bench runs and the accuracy checks, each as plain text, Markdown or JSON. Pure functions: data in, `str` out."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .core.safetext import terminal_safe_lines
from .core.smoke.accuracy import AccuracyRun
from .core.smoke.bench import BenchRun
from .core.smoke.sweep import Reference, SweepRun, reference_for, short_length

Format = Literal["text", "markdown", "json"]
EARLIER = 3  # earlier sweeps set beside the newest one
MARKERS = ("*", "+", "o", "x")  # one per series where the chart has no colours


@dataclass(frozen=True)
class Series:
    label: str
    lengths: tuple[int, ...]
    ttft_s: tuple[float, ...]
    single: bool = False  # a published point, not a line


def run_label(run: SweepRun) -> str:
    """'12-02 18:30 TP16 PCP2 DCP8' from the run's start (YYYYmmdd-HHMMSS.mmm) and layout."""
    day, _, clock = run.started.partition("-")
    return f"{day[4:6]}-{day[6:8]} {clock[:2]}:{clock[2:4]} {run.layout}"


def chart_series(runs: Sequence[SweepRun], reference: Reference | None) -> list[Series]:
    """The newest run first, then the earlier ones, then the reference point."""
    out = []
    for run in runs:
        measured = [(p.length, p.ttft_s) for p in run.points if p.ttft_s is not None]
        if measured:
            out.append(Series(run_label(run), *map(tuple, zip(*measured, strict=True))))  # type: ignore[arg-type]
    if reference is not None:
        out.append(Series(f"guide ({reference.prompts} prompts)", (reference.length,), (reference.ttft_s,), True))
    return out


def draw(plt: Any, series: Sequence[Series], *, colour: bool) -> None:
    """TTFT against prompt length on a plotext figure (the module or a PlotextPlot's `plt`), on a log
    scale done here: plotext's own log scale takes the log again each time the figure is built."""
    plt.clear_data()
    for n, line in enumerate(series):
        marker = "braille" if colour and not line.single else MARKERS[n % len(MARKERS)]
        xs = [x for x, y in zip(line.lengths, line.ttft_s, strict=True) if y > 0]
        ys = [math.log10(y) for y in line.ttft_s if y > 0]
        if line.single:
            plt.scatter(xs, ys, label=line.label, marker="x" if colour else marker)
        else:
            plt.plot(xs, ys, label=line.label, marker=marker)
    lengths = sorted({n for line in series for n in line.lengths})
    if lengths:
        plt.xticks(lengths, [short_length(n) for n in lengths])
    seconds = [y for line in series for y in line.ttft_s if y > 0]
    if seconds:
        low, high = math.floor(math.log10(min(seconds))), math.ceil(math.log10(max(seconds)))
        ticks = [float(e) for e in range(low, high + 1)]
        plt.ylim(low, high)
        plt.yticks(ticks, [seconds_text(10**e) for e in ticks])
    plt.xlabel("prompt tokens")
    plt.ylabel("TTFT")


def chart_text(series: Sequence[Series], width: int = 72, height: int = 18) -> str:
    import plotext  # only when a chart is drawn: the light verbs stay light

    plotext.clear_figure()
    plotext.plotsize(width, height)
    plotext.theme("clear")
    draw(plotext, series, colour=False)
    return str(plotext.uncolorize(plotext.build()))


def seconds_text(seconds: float | None) -> str:
    """A latency as an operator reads it: 87 ms, 2.45 s, 20.7 s; '-' when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def sweep_rows(run: SweepRun, earlier: Sequence[SweepRun], reference: Reference | None) -> list[list[str]]:
    """The table of the newest run, with the earlier runs' TTFT and the reference in extra columns."""
    head = ["length", "ok", "TTFT", "prefill", "hand-off", "TPOT", *(f"TTFT {run_label(e)}" for e in earlier)]
    if reference is not None:
        head.append("guide")
    rows = [head]
    for point in run.points:
        row = [short_length(point.length), f"{point.ok}/{point.sent}"]
        row += [seconds_text(v) for v in (point.ttft_s, point.prefill_s, point.handoff_s, point.tpot_s)]
        for other in earlier:
            same = next((p for p in other.points if p.length == point.length), None)
            row.append(seconds_text(same.ttft_s) if same else "")
        if reference is not None:
            row.append(seconds_text(reference.ttft_s) if reference.length == point.length else "")
        rows.append(row)
    return rows


def _heading(run: SweepRun) -> str:
    s = run.settings
    return (
        f"sweep of {run.profile} ({run.layout}, profile {run.digest[:8]}) at {run.started}: {s.repeat} request(s) "
        f"per length through {s.target}, one at a time, {s.max_tokens} tokens out; medians"
    )


def _notes(run: SweepRun, reference: Reference | None) -> list[str]:
    notes = [f"{short_length(p.length)}: {p.error}" for p in run.points if p.error]
    if any(p.ttft_s is not None and p.prefill_s is None for p in run.points):
        notes.append("no prefill/hand-off split: only cpconsole's proxy reports it (Server-Timing)")
    if reference is not None:
        notes.append(f"guide: {reference.source}")
    return notes


def sweep_report(runs: Sequence[SweepRun], fmt: Format) -> str:
    """The newest of `runs` (oldest first, as stored) with up to EARLIER earlier ones beside it,
    and the guide's figure where the newest run is the guide's deployment."""
    if not runs:
        return "{}\n" if fmt == "json" else "no sweep stored for this profile yet\n"
    run, earlier = runs[-1], list(reversed(runs[:-1]))[:EARLIER]
    reference = reference_for(run)
    if fmt == "json":
        out: dict[str, Any] = {
            "run": run.as_json(),
            "earlier": [e.as_json() for e in earlier],
            "reference": asdict(reference) if reference else None,
        }
        return json.dumps(out, indent=2) + "\n"
    rows = sweep_rows(run, earlier, reference)
    chart = chart_text(chart_series([run, *earlier], reference))
    notes = _notes(run, reference)
    if fmt == "markdown":
        parts = [f"## {_heading(run)}", "", table_markdown(rows), "", "```text", chart, "```", ""]
        return "\n".join(parts + [f"- {n}" for n in notes]) + "\n"
    return "\n".join([_heading(run), "", table_text(rows), "", chart, *notes]) + "\n"


def table_text(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def table_markdown(rows: Sequence[Sequence[str]]) -> str:
    lines = [f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines)


def bench_rows(runs: Sequence[BenchRun], mark: str | None = None) -> list[list[str]]:
    """Runs side by side, oldest first; `mark` flags the run just made."""
    head = ["run", "profile@", "in/out/n", "ok/fail", "req/s", "out tok/s"]
    rows = [[*head, "TTFT mean", "TTFT p99", "TPOT mean", "TPOT p99", ""]]
    for run in runs:
        s, cfg = run.summary, run.settings
        rows.append(
            [
                run.started,
                run.digest[:8],
                f"{cfg.get('input_len')}/{cfg.get('output_len')}/{cfg.get('num_prompts')}",
                f"{s.completed}/{s.failed}",
                f"{s.request_throughput:.2f}",
                f"{s.output_throughput:.1f}",
                f"{s.mean_ttft_ms:.1f}ms",
                f"{s.p99_ttft_ms:.1f}ms",
                f"{s.mean_tpot_ms:.2f}ms",
                f"{s.p99_tpot_ms:.2f}ms",
                "← this run" if run.started == mark else "",
            ]
        )
    return rows


def bench_table(runs: Sequence[BenchRun], mark: str | None = None) -> str:
    return table_text(bench_rows(runs, mark))


def bench_report(runs: Sequence[BenchRun], fmt: Format, mark: str | None = None) -> str:
    """Stored bench runs, oldest first: the comparison table, Markdown for a ticket, or JSON."""
    if fmt == "json":
        shown = [
            {"profile": r.profile, "digest": r.digest, "started": r.started, "settings": r.settings}
            | {"summary": asdict(r.summary), "result": r.result}
            for r in runs
        ]
        return json.dumps(shown, indent=2) + "\n"
    if fmt == "markdown":
        return f"## vllm bench serve runs\n\n{table_markdown(bench_rows(runs, mark))}\n"
    return bench_table(runs, mark) + "\n"


def accuracy_rows(runs: Sequence[AccuracyRun]) -> list[list[str]]:
    """The newest of `runs` (oldest first, as stored) and up to EARLIER earlier runs of its dataset,
    newest first, then the guide's figure where the dataset has one."""
    run = runs[-1]
    same = [r for r in runs if r.dataset == run.dataset][-(EARLIER + 1) :]
    rows = [["run", "profile@", "dataset", "samples", "accuracy", "tool", "through", ""]]
    for r in reversed(same):
        mark = "← newest" if r is run else ""
        score = f"{r.accuracy:.2f} %"
        rows.append([r.started, r.digest[:12], r.dataset, str(r.samples), score, r.tool, r.target, mark])
    if run.reference is not None:
        rows.append(["the guide", "", run.dataset, "", f"{run.reference:.2f} %", "aisbench", "", "DeepSeek-V3.1-w8a8"])
    return rows


def accuracy_report(runs: Sequence[AccuracyRun], fmt: Format, gate: float | None = None) -> str:
    """The newest of `runs` (oldest first, as stored): its score, the earlier runs of its dataset
    beside it, the guide's figure where it has one, the gate; and each wrong answer. JSON: the run."""
    if not runs:
        return "{}\n" if fmt == "json" else "no accuracy run stored for this profile yet\n"
    run = runs[-1]
    if fmt == "json":
        return json.dumps({**run.as_json(), "min": gate}, indent=2) + "\n"
    rows = accuracy_rows(runs)
    wrong = [i for i in run.items if not i.correct]
    heading = (
        f"{run.dataset} through {run.target}: {run.samples - len(wrong)}/{run.samples} correct, {run.accuracy:.2f} %"
    )
    if gate is not None:
        heading += f" ({'at least' if run.accuracy >= gate else 'BELOW'} the profile's {gate:g} %)"
    misses = [
        f"{i.id}: expected {i.expected}, "
        + (f"request failed: {i.error}" if i.error else f"got {i.answer if i.answer is not None else 'no number'}")
        for i in wrong
    ]
    # the answers are the servers' (and AISBench's) text: inert on a terminal
    if fmt == "markdown":
        parts = [f"## {heading}", "", table_markdown(rows), ""]
        return terminal_safe_lines("\n".join(parts + [f"- {m}" for m in misses]) + "\n")
    listed = ["", "wrong:", *(f"  {m}" for m in misses[:20])] if misses else []
    if len(misses) > 20:
        listed.append(f"  … {len(misses) - 20} more (--json has every answer)")
    return terminal_safe_lines("\n".join([heading, "", table_text(rows), *listed]) + "\n")
