"""An incident bundle of one deployment: every node read at once (each node's pieces in turn over
its one connection), what the session holds added, the summary on top, one .tar.gz written."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..journal import JournalEntry
from ..orchestrate.model import ProcessView
from ..plan import LaunchPlan
from ..remote import Transport
from ..render import render_script
from ..telemetry.alerts import AlertRecord
from .archive import MAX_BYTES, Archive
from .nodes import node_pieces, process_pieces, read_piece, read_plogs
from .redact import Redactor
from .summary import Window, summary, utc

Progress = Callable[[int, int, str], None]  # pieces done, pieces in all, the one just done


@dataclass(frozen=True)
class Held:
    """What the session holds that no node does: states and causes, alerts, the journal, and the
    telemetry it polled (the exporter's text of now, each node's recent HBM/AICore samples)."""

    views: Mapping[str, ProcessView]
    alerts: Sequence[AlertRecord]
    journal: Sequence[JournalEntry]
    metrics: str
    npu_history: Mapping[str, Sequence[tuple[float, float]]]


def bundle_name(plan: LaunchPlan, made_at: float) -> str:
    return f"cpconsole-bundle-{plan.profile}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(made_at))}"


def _alerts_json(records: Sequence[AlertRecord], window: Window) -> str:
    rows = [
        {
            "severity": r.alert.severity,
            "source": r.alert.source,
            "message": r.alert.message,
            "kind": r.alert.kind,
            "place": r.alert.place,
            "hint": r.alert.hint,
            "raised": utc(r.raised_at),
            "cleared": utc(r.cleared_at) if r.cleared_at is not None else None,
        }
        for r in records
        if window.holds(r.raised_at) or r.cleared_at is None or window.holds(r.cleared_at)
    ]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


async def make_bundle(
    plan: LaunchPlan,
    transports: Mapping[str, Transport],
    held: Held,
    profile_text: str,
    redactor: Redactor,
    window: Window,
    out: Path,
    *,
    made_by: str,
    made_at: float,
    max_bytes: int = MAX_BYTES,
    progress: Progress | None = None,
) -> Archive:
    archive = Archive(bundle_name(plan, made_at), redactor, int(made_at), max_bytes)
    archive.add("profile.yaml", profile_text)
    for proc in plan.processes:
        archive.add(f"processes/{proc.name}/launch.sh", render_script(proc))
    archive.add("alerts.json", _alerts_json(held.alerts, window))
    archive.add("journal.jsonl", "".join(e.line() + "\n" for e in held.journal if window.holds(e.epoch())))
    archive.add("metrics.prom", held.metrics)
    archive.add("metrics-npu.json", json.dumps({n: list(s) for n, s in held.npu_history.items()}) + "\n")

    per_node = {
        node.name: [
            *node_pieces(plan, node),
            *(p for proc in plan.processes if proc.node == node.name for p in process_pieces(plan, proc)),
        ]
        for node in plan.nodes
    }
    total = sum(len(pieces) + 1 for pieces in per_node.values())  # + its plogs
    done = 0

    def one_done(what: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, what)

    async def read_node(name: str) -> None:
        transport = transports[name]
        for piece in per_node[name]:
            await read_piece(transport, piece, archive)
            one_done(piece.name)
        await read_plogs(plan, plan.node(name), transport, window.start, archive)
        one_done(f"nodes/{name}/plog")

    await asyncio.gather(*(read_node(name) for name in per_node))
    archive.missing.sort()
    archive.fit()
    files = {name: len(data) for name, data in archive.files.items()}
    archive.files["SUMMARY.md"] = redactor.text(
        summary(
            plan, made_at, made_by, window, held.views, held.alerts, held.journal, files, archive.missing, archive.cut
        )
    ).encode()
    archive.write(out)
    return archive
