"""Per API server, from /metrics over the last minute: queue, KV cache, token rates, latency
quantiles, speculative decoding, preemptions — and how fresh the numbers are. Under them, the real
traffic through cpconsole's proxy: end-to-end TTFT split into prefill and hand-off, per
prompt-length class where the traffic has several."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from ...core.session import Session
from ...core.telemetry.proxy_metrics import PROMPT_CLASSES, UNKNOWN_CLASS
from ...core.view import Quantiles, ServerFigures, TrafficFigures
from ...results import seconds_text
from ..widgets.node_panel import bar, sparkline
from .base import SessionScreen


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


COLUMNS = (
    "server",
    "run",
    "wait",
    "KV cache",
    "prompt tok/s",
    "gen tok/s",
    "TTFT p50/p99",
    "ITL p50/p99",
    "MTP accept",
    "accept len",
    "preempt",
    "read at",
)
WIDE = 140  # narrower terminals show the columns an incident needs first
WIDE_ONLY = ("ITL p50/p99", "MTP accept", "accept len", "preempt")


TRAFFIC_COLUMNS = (
    "prompts",
    "answered",
    "failed",
    "req/s",
    "TTFT p50/p99",
    "prefill p50/p99",
    "hand-off p50/p99",
    "TPOT p50/p99",
    "E2E p50/p99",
)
TRAFFIC_WIDE_ONLY = ("TPOT p50/p99", "E2E p50/p99")
CLASS_ORDER = [label for label, _ in PROMPT_CLASSES] + [UNKNOWN_CLASS]


def _pair(quantiles: Quantiles) -> str:
    return "/".join(map(seconds_text, quantiles))


def traffic_summary(traffic: TrafficFigures) -> Text:
    """One line for the board: what clients got through the proxy in the last minute."""
    if not traffic.ttft_exported:  # say so, rather than a dash that reads as "no requests"
        text = Text(f"{_num(traffic.per_s, '/s', 2)} TTFT not exported by the proxy", style="bold")
        if traffic.failed:
            text.append(f" {traffic.failed} failed", style="bold red")
        return text
    text = Text(f"{_num(traffic.per_s, '/s', 2)} TTFT {_pair(traffic.ttft)}", style="bold")
    if traffic.failed:  # before the split: a narrow terminal cuts the end of the line
        text.append(f" {traffic.failed} failed", style="bold red")
    text.append(
        f" (prefill {seconds_text(traffic.prefill[0])} + hand-off {seconds_text(traffic.handoff[0])})", style="dim"
    )
    return text


def traffic_table(figures: ServerFigures, wide: bool) -> Table | Text:
    traffic = figures.traffic
    if traffic is None or not (traffic.answered or traffic.failed):
        return Text("real traffic through the proxy: none in the last minute (probes are not counted)", style="dim")
    table = Table(expand=True, box=None, padding=(0, 1), title="real traffic through the proxy, last minute")
    for column in TRAFFIC_COLUMNS:
        if wide or column not in TRAFFIC_WIDE_ONLY:
            table.add_column(column, no_wrap=True)
    rows = [("all", traffic)]
    if len(figures.classes) > 1:  # one class alone is the whole again
        rows += sorted(figures.classes.items(), key=lambda item: CLASS_ORDER.index(item[0]))
    for label, row in rows:
        cells = (
            Text(label, style="bold"),
            str(row.answered),
            "-" if row.failed is None else Text(str(row.failed), style="bold red" if row.failed else ""),
            _num(row.per_s, digits=2),
            _pair(row.ttft),
            _pair(row.prefill),
            _pair(row.handoff),
            _pair(row.tpot),
            _pair(row.e2e),
        )
        table.add_row(
            *(c for column, c in zip(TRAFFIC_COLUMNS, cells, strict=True) if wide or column not in TRAFFIC_WIDE_ONLY)
        )
    return table


def _rate(now: float | None, series: Sequence[float]) -> Text:
    """The rate over the window, and how it moved (each scrape interval, scaled to the window's peak)."""
    text = Text(_num(now))
    if series:
        text.append(" " + sparkline(series, width=8, top=max(series) or 1.0), style="cyan")
    return text


class MetricsScreen(SessionScreen):
    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="metrics"):
            yield Static(id="metrics-table")
            yield Static(id="traffic-table")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.refresh_from(self.session)

    def refresh_from(self, session: Session) -> None:
        view = session.view()
        now = view.now
        wide = self.app.size.width >= WIDE
        scrapes = [figures.scrape for figures in view.servers.values()]
        drawn_from = (wide, *((s.ok_at, s.error, int(s.age(now) or 0) if s.stale else None) for s in scrapes))
        if self._drawn.get("#metrics-table") == drawn_from:
            return  # rebuilt only from a new scrape, or once a second while one is stale
        proxy = next((f for f in view.servers.values() if f.traffic is not None), None)
        if proxy is not None:
            self.draw("#traffic-table", traffic_table(proxy, wide), key=drawn_from)
        table = Table(expand=True, box=None, padding=(0, 1))
        for column in COLUMNS:
            if wide or column not in WIDE_ONLY:
                table.add_column(column, no_wrap=True)
        for name, figures in view.servers.items():
            result = figures.scrape
            total = result.value.total if result.value else None
            usage = total.kv_cache_usage if total else None
            age = result.age(now)
            if result.ok_at is None:
                freshness = Text("never", style="bold yellow" if result.stale else "dim")
            elif result.stale:
                freshness = Text(f"stale {age:.0f}s {(result.error or '')[:30]}", style="bold yellow")
            else:
                freshness = Text(time.strftime("%H:%M:%S", time.localtime(result.ok_at)), style="dim")
            cells: tuple[Text | str, ...] = (
                Text(name, style="bold"),
                _num(total.running if total else None, digits=0),
                _num(total.waiting if total else None, digits=0),
                Text(
                    f"{bar(usage or 0.0, 8)} {usage:.0%}" if usage is not None else "-",
                    style="red" if usage and usage > 0.9 else "",
                ),
                _rate(figures.prompt_tokens_per_s, figures.prompt_rate_series),
                _rate(figures.generation_tokens_per_s, figures.generation_rate_series),
                _pair(figures.ttft),
                _pair(figures.itl),
                _num(None if figures.acceptance_rate is None else 100 * figures.acceptance_rate, "%", 0),
                _num(figures.mean_acceptance_length, digits=2),
                _num(total.preemptions if total else None, digits=0),
                freshness,
            )
            table.add_row(
                *(cell for column, cell in zip(COLUMNS, cells, strict=True) if wide or column not in WIDE_ONLY)
            )
        self.draw("#metrics-table", table, key=drawn_from)
