"""Health beyond liveness: a 1-token probe request, and stall detection from the metrics a
process reports (busy but not generating, queueing with nothing running, healthy but failing
probes)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import httpx

PROBE_PREFIX = "cpconsole-probe-"


async def probe(http: httpx.AsyncClient, base_url: str, model: str, timeout: float = 60.0) -> float:
    """Milliseconds for a 1-token completion; raises httpx.HTTPError (incl. status) on failure.
    Tagged with an X-Request-Id that says it is ours."""
    started = time.monotonic()
    answer = await http.post(
        base_url + "/v1/completions",
        json={"model": model, "prompt": "ping", "max_tokens": 1, "temperature": 0},
        headers={"X-Request-Id": PROBE_PREFIX + secrets.token_hex(6)},
        timeout=timeout,
    )
    answer.raise_for_status()
    return (time.monotonic() - started) * 1000


Progress = tuple[float, ...]  # what moves when the engine works: tokens out, prompts in, engine steps, KV in use


@dataclass(frozen=True)
class ProbeAnswer:
    """A probe's outcome: how long it took, or that it was not sent because the server is full
    (its running requests reach max_num_seqs × its engines: one more would only queue)."""

    ms: float | None = None
    busy: str = ""  # why it was not sent, e.g. "4/4 running"


@dataclass(frozen=True)
class ChipReading:
    """What npu-smi last said of a node's chips: any of them computing (AI core busy), and when."""

    busy: bool
    at: float


@dataclass
class StallDetector:
    """Fed with each scrape of one API server; `reason` says why it looks stalled, if it does.

    Work is anything of `progress` moving — generated tokens, and for long prompts the prompt
    tokens, engine steps and the KV cache in use (a chunked prefill takes blocks chunk by chunk; one
    unchunked 128k prefill moves nothing until it ends). While no counter moves but the chips compute, a long prefill is under way: stalled only
    after `computing_after_s`. A node with chips whose last reading is older than the quiet spell
    has not yet said whether they compute: no verdict until it has (or computing_after_s passed)."""

    after_s: float = 30.0
    computing_after_s: float = 600.0
    _busy_since: float | None = None
    _last_progress: Progress | None = None
    _queued_since: float | None = None
    _probe_failing_since: float | None = None
    _chips: ChipReading | None = None
    _sampled_at: float | None = None  # when the last sample was taken: quiet spells are measured in samples
    reason: str | None = field(default=None, init=False)

    def observe(
        self, at: float, *, running: float, waiting: float, progress: Progress, chips: ChipReading | None = None
    ) -> str | None:
        """A sample taken at `at` (the same sample seen again changes nothing: a spell is quiet only
        between samples that say so). chips: its node's latest npu-smi reading (None: no NPUs)."""
        self._sampled_at = at
        if self._last_progress is None or progress != self._last_progress or running == 0:
            self._busy_since = at if running > 0 else None
        elif self._busy_since is None:
            self._busy_since = at
        self._last_progress = progress
        self._chips = chips
        if waiting > 0 and running == 0:
            self._queued_since = self._queued_since if self._queued_since is not None else at
        else:
            self._queued_since = None
        return self._decide(at)

    def observe_probe(self, at: float, *, health_ok: bool, probe_ok: bool) -> str | None:
        if health_ok and not probe_ok:
            self._probe_failing_since = self._probe_failing_since if self._probe_failing_since is not None else at
        else:
            self._probe_failing_since = None
        return self._decide(at)

    def _decide(self, at: float) -> str | None:
        limit = self.after_s
        sampled = self._sampled_at if self._sampled_at is not None else at
        quiet = sampled - self._busy_since if self._busy_since is not None else None
        chips = self._chips
        computing = chips is not None and (chips.busy or (self._busy_since or 0.0) > chips.at)
        if quiet is not None and quiet >= (self.computing_after_s if computing else limit):
            while_ = " while its chips compute" if chips is not None and chips.busy else ""
            self.reason = f"running requests but no progress{while_} for {quiet:.0f} s"
        elif self._queued_since is not None and sampled - self._queued_since >= limit:
            self.reason = f"requests waiting with none running for {sampled - self._queued_since:.0f} s"
        elif self._probe_failing_since is not None and at - self._probe_failing_since >= limit:
            self.reason = f"/health answers but probe requests fail for {at - self._probe_failing_since:.0f} s"
        else:
            self.reason = None
        return self.reason
