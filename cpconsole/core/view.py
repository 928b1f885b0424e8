"""What the console shows, frozen at one moment: the processes, the nodes' chips and each API
server's figures. The UI reads a SessionView (Session.view()) and never the orchestrator's or the
telemetry's own objects; a view does not change after it is made."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .orchestrate import ProcessView
from .plan import LaunchPlan
from .ranks import Rank
from .telemetry.alerts import Alert
from .telemetry.hub import NpuSample
from .telemetry.npu_smi import NpuSmiInfo
from .telemetry.pollers import PollResult
from .telemetry.router_metrics import ROUTED
from .telemetry.vllm_metrics import EngineMetrics, VllmMetrics
from .telemetry.window import MetricsWindow

Quantiles = tuple[float | None, float | None]  # p50, p99 in seconds


def quantiles(window: MetricsWindow, key: str, without: int = 0) -> Quantiles:
    return window.quantile(key, 0.5, without=without), window.quantile(key, 0.99, without=without)


@dataclass(frozen=True)
class TrafficFigures:
    """Requests through cpconsole's proxy over the last minute, as clients saw them (its TTFT runs
    from the request's arrival to the first token relayed; probes are never in it), with the TTFT
    split: the prefill, then the hand-off (KV transfer and the decode's first step)."""

    answered: int  # requests that ended ok in the window
    failed: int | None  # that did not (None: not counted apart, as for a prompt-length class)
    per_s: float | None  # answered per second
    ttft: Quantiles
    prefill: Quantiles
    handoff: Quantiles
    tpot: Quantiles
    e2e: Quantiles
    ttft_exported: bool = True  # False: the proxy exports no time to first token (vllm-router)

    @classmethod
    def of(cls, window: MetricsWindow, *, with_failures: bool) -> TrafficFigures:
        ttft = window.count("ttft")  # None: no TTFT histogram at all (vllm-router): its answered count
        answered = (ttft if ttft is not None else window.count(ROUTED)) or 0.0
        failed = window.increase_of(lambda m: m.requests_finished - m.request_success.get("ok", 0.0))
        return cls(
            int(answered),
            int(failed or 0) if with_failures else None,
            answered / window.span if window.span > 0 else None,
            quantiles(window, "ttft"),
            quantiles(window, "prefill"),
            quantiles(window, "handoff"),
            quantiles(window, "itl"),
            quantiles(window, "e2e"),
            ttft is not None or not window.count(ROUTED),
        )


@dataclass(frozen=True)
class ServerFigures:
    """One API server over the last minute: its latest scrape (with its staleness) and what the
    window of scrapes makes of it."""

    scrape: PollResult[VllmMetrics]
    latest: EngineMetrics | None
    prompt_tokens_per_s: float | None
    generation_tokens_per_s: float | None
    prompt_rate_series: tuple[float, ...]
    generation_rate_series: tuple[float, ...]
    ttft: Quantiles
    itl: Quantiles
    acceptance_rate: float | None
    mean_acceptance_length: float | None
    busy: str = ""  # the console holds its probes back: the server is full (e.g. "4/4 running")
    traffic: TrafficFigures | None = None  # the proxy's: real traffic end to end
    classes: Mapping[str, TrafficFigures] = field(default_factory=dict)  # the same, by prompt length
    backends: Mapping[str, str] = field(default_factory=dict)  # the proxy's view: host:port → state

    @classmethod
    def of(
        cls, scrape: PollResult[VllmMetrics], window: MetricsWindow, probes: int = 0, busy: str = ""
    ) -> ServerFigures:
        """probes: the console's own requests in the window, left out of the latencies shown."""
        return cls(
            scrape=scrape,
            latest=window.latest,
            prompt_tokens_per_s=window.prompt_tokens_per_s,
            generation_tokens_per_s=window.generation_tokens_per_s,
            prompt_rate_series=tuple(window.prompt_rate_series),
            generation_rate_series=tuple(window.generation_rate_series),
            ttft=quantiles(window, "ttft", probes),
            itl=quantiles(window, "itl"),
            acceptance_rate=window.acceptance_rate,
            mean_acceptance_length=window.mean_acceptance_length,
            busy=busy,
        )

    @classmethod
    def of_proxy(
        cls, scrape: PollResult[VllmMetrics], window: MetricsWindow, classes: Mapping[str, MetricsWindow]
    ) -> ServerFigures:
        """The proxy: its figures as a server's, and its traffic as a whole and per prompt-length
        class (the classes that had answered requests in the window)."""
        per_class = {label: TrafficFigures.of(w, with_failures=False) for label, w in classes.items()}
        return dataclasses.replace(
            cls.of(scrape, window),
            traffic=TrafficFigures.of(window, with_failures=True),
            classes={label: figures for label, figures in per_class.items() if figures.answered},
            backends=dict(scrape.value.backends) if scrape.value is not None and not scrape.stale else {},
        )


@dataclass(frozen=True)
class SessionView:
    now: float
    processes: Mapping[str, ProcessView]
    npu: Mapping[str, PollResult[NpuSmiInfo]]  # nodes with chips only
    npu_history: Mapping[str, tuple[NpuSample, ...]]
    servers: Mapping[str, ServerFigures]  # API servers (not the proxy)


@dataclass(frozen=True)
class Snapshot:
    """What a metrics scrape shows (telemetry/exporter.py): the plan, the view now, the alerts."""

    plan: LaunchPlan
    view: SessionView
    alerts: Sequence[Alert]
    ranks: Sequence[Rank] = ()  # every rank with its state (the rank map)
    restarts: Mapping[str, int] = field(default_factory=dict)  # per process: new runs seen while watching
