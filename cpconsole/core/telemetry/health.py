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


@dataclass
class StallDetector:
    """Fed with each scrape of one API server; `reason` says why it looks stalled, if it does."""

    after_s: float = 30.0
    _busy_since: float | None = None
    _last_generated: float | None = None
    _queued_since: float | None = None
    _probe_failing_since: float | None = None
    reason: str | None = field(default=None, init=False)

    def observe(self, at: float, *, running: float, waiting: float, generation_tokens: float) -> str | None:
        if self._last_generated is None or generation_tokens != self._last_generated or running == 0:
            self._busy_since = at if running > 0 else None
        elif self._busy_since is None:
            self._busy_since = at
        self._last_generated = generation_tokens
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
        if self._busy_since is not None and at - self._busy_since >= limit:
            self.reason = f"running requests but no token generated for {at - self._busy_since:.0f} s"
        elif self._queued_since is not None and at - self._queued_since >= limit:
            self.reason = f"requests waiting with none running for {at - self._queued_since:.0f} s"
        elif self._probe_failing_since is not None and at - self._probe_failing_since >= limit:
            self.reason = f"/health answers but probe requests fail for {at - self._probe_failing_since:.0f} s"
        else:
            self.reason = None
        return self.reason
