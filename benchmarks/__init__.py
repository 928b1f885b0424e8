"""Benchmarks: each paired with a baseline measured in the same run (docs/performance.md)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object], rounds: int) -> float:
    """The median of `rounds` runs of fn, in seconds."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)
