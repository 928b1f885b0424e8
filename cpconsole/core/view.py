"""What the console shows, frozen at one moment: the processes, the nodes' chips and each API
server's figures. The UI reads a SessionView (Session.view()) and never the orchestrator's or the
telemetry's own objects; a view does not change after it is made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .orchestrate import ProcessView
from .telemetry.hub import NpuSample
from .telemetry.npu_smi import NpuSmiInfo
from .telemetry.pollers import PollResult
from .telemetry.vllm_metrics import EngineMetrics, VllmMetrics
from .telemetry.window import MetricsWindow

Quantiles = tuple[float | None, float | None]  # p50, p99 in seconds


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
            ttft=(window.quantile("ttft", 0.5, without=probes), window.quantile("ttft", 0.99, without=probes)),
            itl=(window.quantile("itl", 0.5), window.quantile("itl", 0.99)),
            acceptance_rate=window.acceptance_rate,
            mean_acceptance_length=window.mean_acceptance_length,
            busy=busy,
        )


@dataclass(frozen=True)
class SessionView:
    now: float
    processes: Mapping[str, ProcessView]
    npu: Mapping[str, PollResult[NpuSmiInfo]]  # nodes with chips only
    npu_history: Mapping[str, tuple[NpuSample, ...]]
    servers: Mapping[str, ServerFigures]  # API servers (not the proxy)
