"""Rates and quantiles over the last minute of scrapes, as Prometheus would compute them:
counter increases across resets (a restarted process starts again from zero), and
histogram_quantile on bucket increases with linear interpolation inside the bucket."""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .vllm_metrics import EngineMetrics, VllmMetrics


@dataclass(frozen=True)
class Scrape:
    at: float
    metrics: EngineMetrics


def increase(values: list[float]) -> float:
    """Total increase of a counter sampled in order; a drop means the counter restarted at 0."""
    total = 0.0
    for before, after in itertools.pairwise(values):
        total += after - before if after >= before else after
    return total


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile over cumulative (upper bound, count) buckets."""
    if not buckets or buckets[-1][1] <= 0 or not 0 <= q <= 1:
        return None
    rank = q * buckets[-1][1]
    for index, (upper, count) in enumerate(buckets):
        if count >= rank:
            if math.isinf(upper):
                finite = [b for b, _ in buckets if not math.isinf(b)]
                return finite[-1] if finite else None
            lower, below = buckets[index - 1] if index else (0.0, 0.0)
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
    return None


class MetricsWindow:
    def __init__(self, horizon: float = 60.0) -> None:
        self.horizon = horizon
        self._scrapes: deque[Scrape] = deque()

    def add(self, metrics: VllmMetrics | EngineMetrics, at: float) -> None:
        total = metrics.total if isinstance(metrics, VllmMetrics) else metrics
        self._scrapes.append(Scrape(at, total))
        while len(self._scrapes) > 2 and self._scrapes[1].at <= at - self.horizon:
            self._scrapes.popleft()

    @property
    def span(self) -> float:
        return self._scrapes[-1].at - self._scrapes[0].at if len(self._scrapes) > 1 else 0.0

    @property
    def latest(self) -> EngineMetrics | None:
        return self._scrapes[-1].metrics if self._scrapes else None

    def _increase(self, value: Callable[[EngineMetrics], float]) -> float | None:
        if len(self._scrapes) < 2:
            return None
        return increase([value(s.metrics) for s in self._scrapes])

    def _rate(self, value: Callable[[EngineMetrics], float]) -> float | None:
        grown = self._increase(value)
        return None if grown is None or self.span <= 0 else grown / self.span

    def _rates(self, value: Callable[[EngineMetrics], float]) -> list[float]:
        """The rate between each pair of successive scrapes in the window, oldest first."""
        return [
            increase([value(a.metrics), value(b.metrics)]) / (b.at - a.at)
            for a, b in itertools.pairwise(self._scrapes)
            if b.at > a.at
        ]

    @property
    def prompt_rate_series(self) -> list[float]:
        return self._rates(lambda m: m.prompt_tokens)

    @property
    def generation_rate_series(self) -> list[float]:
        return self._rates(lambda m: m.generation_tokens)

    @property
    def prompt_tokens_per_s(self) -> float | None:
        return self._rate(lambda m: m.prompt_tokens)

    @property
    def generation_tokens_per_s(self) -> float | None:
        return self._rate(lambda m: m.generation_tokens)

    @property
    def requests_per_s(self) -> float | None:
        return self._rate(lambda m: m.requests_finished)

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted draft tokens over proposed draft tokens (MTP)."""
        drafted = self._increase(lambda m: m.spec_draft_tokens)
        accepted = self._increase(lambda m: m.spec_accepted_tokens)
        return None if not drafted or accepted is None else accepted / drafted

    @property
    def mean_acceptance_length(self) -> float | None:
        """1 + accepted tokens per draft: tokens each decode step yields."""
        drafts = self._increase(lambda m: m.spec_drafts)
        accepted = self._increase(lambda m: m.spec_accepted_tokens)
        return None if not drafts or accepted is None else 1 + accepted / drafts

    def histogram_increase(self, key: str) -> list[tuple[float, float]] | None:
        """The window's observations as cumulative buckets. A scrape without the histogram counts as
        none observed yet: a labelled series (the proxy's) appears with its first observation."""
        hists = [s.metrics.histograms.get(key) for s in self._scrapes]
        latest = next((h for h in reversed(hists) if h is not None and h.buckets), None)
        if latest is None or len(hists) < 2:
            return None
        bounds = [b for b, _ in latest.buckets]
        series = [h.buckets if h is not None and h.buckets else [(b, 0.0) for b in bounds] for h in hists]
        series = [buckets for buckets in series if [b for b, _ in buckets] == bounds]
        if len(series) < 2:
            return None
        return [(bound, increase([buckets[i][1] for buckets in series])) for i, bound in enumerate(bounds)]

    def count(self, key: str) -> float | None:
        """Observations of a histogram in the window."""
        buckets = self.histogram_increase(key)
        return buckets[-1][1] if buckets else None

    def increase_of(self, value: Callable[[EngineMetrics], float]) -> float | None:
        return self._increase(value)

    @property
    def first_at(self) -> float | None:
        return self._scrapes[0].at if self._scrapes else None

    @property
    def bounds(self) -> tuple[float, float] | None:
        """When the window's first and last scrapes were taken."""
        return (self._scrapes[0].at, self._scrapes[-1].at) if len(self._scrapes) > 1 else None

    def quantile(self, key: str, q: float, *, without: int = 0) -> float | None:
        """E.g. quantile("ttft", 0.99): seconds, over the window; `without` leaves out that many of
        the fastest observations (the console's own probes: one token, nothing queued before them)."""
        buckets = self.histogram_increase(key)
        if not buckets:
            return None
        return histogram_quantile(q, [(bound, max(0.0, count - without)) for bound, count in buckets])
