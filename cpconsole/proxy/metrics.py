"""What the proxy sees of every request, as Prometheus text on its /metrics: the time to first token
as the client waits for it, split into the prefill (request → the prefill's answer) and the hand-off
(that answer → the decode's first token: KV transfer, then one decode step), the time per output
token and the whole request, prompt and output tokens, per prefill and decode backend and prompt-length
class, and how each request ended. The console's own probes are counted apart and never enter the latencies."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..core.telemetry.proxy_metrics import PREFIX, prompt_class
from .backends import Backend, BackendState

STATES: tuple[BackendState, ...] = get_args(BackendState)

# long context: a 128k prefill on the guide's P takes seconds to minutes
SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300, 600, 1200)
STEP_SECONDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)
TOKENS = (128, 512, 1024, 4096, 8192, 16384, 32768, 65536, 131072, 262144)


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        backends = ("prefill", "decode")
        labels = (*backends, "prompt")  # prompt: its length class (PROMPT_CLASSES)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, buckets=buckets, registry=self.registry)

        self.ttft = histogram("ttft_seconds", "Request arrival to the first token relayed to the client.", SECONDS)
        self.prefill = histogram("prefill_seconds", "Request arrival to the prefill's answer.", SECONDS)
        self.handoff = histogram(
            "handoff_seconds", "The prefill's answer to the decode's first token (KV hand-off, one step).", SECONDS
        )
        self.tpot = histogram("tpot_seconds", "Time per output event after the first (a decode step).", STEP_SECONDS)
        self.e2e = histogram("e2e_seconds", "Request arrival to its last byte relayed.", SECONDS)
        self.prompt_tokens = histogram("prompt_tokens", "Prompt tokens, as the prefill counted them.", TOKENS)
        self.requests = Counter(
            PREFIX + "requests",
            "Requests by backend pair and how they ended.",
            (*backends, "outcome"),
            registry=self.registry,
        )
        self.probes = Counter(
            PREFIX + "probes", "The console's own probes (not in the latencies).", registry=self.registry
        )
        self.retries = Counter(
            PREFIX + "retries",
            "Attempts on another instance of a role after one failed before any byte reached the client.",
            ("stage",),
            registry=self.registry,
        )
        self.backend_state = Gauge(
            PREFIX + "backend_state",
            "1 for each backend's state: healthy, open (out of rotation until /health answers) or draining.",
            ("role", "instance", "state"),
            registry=self.registry,
        )
        self.backend_active = Gauge(
            PREFIX + "backend_active", "Requests a backend holds now.", ("role", "instance"), registry=self.registry
        )
        self.output_tokens = Counter(
            PREFIX + "output_tokens",
            "Streamed output events relayed (a token each; more with MTP).",
            registry=self.registry,
        )

    def show_backends(self, backends: Mapping[str, Sequence[Backend]]) -> None:
        """Each backend's state and load as they are now (a removed backend's series go)."""
        self.backend_state.clear()
        self.backend_active.clear()
        for role, members in backends.items():
            for backend in members:
                for state in STATES:
                    self.backend_state.labels(role, backend.name, state).set(float(backend.state == state))
                self.backend_active.labels(role, backend.name).set(backend.active)

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class Timing:
    """One request's moments (monotonic seconds); observed into ProxyMetrics once it ends."""

    prefill: str
    decode: str = ""
    probe: bool = False
    arrived: float = field(default_factory=time.monotonic)
    prefilled: float | None = None
    first_token: float | None = None
    tokens_out: int = 0  # SSE events relayed (a token each, more with speculative decoding)
    prompt_tokens: int | None = None

    def relayed(self, chunk: bytes) -> None:
        if self.first_token is None:
            self.first_token = time.monotonic()
        self.tokens_out += chunk.count(b"data: ") - chunk.count(b"data: [DONE]")

    def finish(self, metrics: ProxyMetrics, outcome: str) -> None:
        if self.probe:
            metrics.probes.inc()
            return
        metrics.requests.labels(self.prefill, self.decode, outcome).inc()
        if outcome != "ok":
            return
        now, labels = time.monotonic(), (self.prefill, self.decode, prompt_class(self.prompt_tokens))
        metrics.output_tokens.inc(self.tokens_out)
        metrics.e2e.labels(*labels).observe(now - self.arrived)
        if self.prefilled is not None:
            metrics.prefill.labels(*labels).observe(self.prefilled - self.arrived)
        if self.first_token is not None:
            metrics.ttft.labels(*labels).observe(self.first_token - self.arrived)
            if self.prefilled is not None:
                metrics.handoff.labels(*labels).observe(self.first_token - self.prefilled)
            if self.tokens_out > 1:
                metrics.tpot.labels(*labels).observe((now - self.first_token) / (self.tokens_out - 1))
        if self.prompt_tokens is not None:
            metrics.prompt_tokens.labels(*labels).observe(self.prompt_tokens)
