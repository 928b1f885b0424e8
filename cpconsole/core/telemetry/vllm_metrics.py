"""vLLM's Prometheus /metrics, read fast: only `vllm:` lines of the families the console shows,
per engine and summed, across vLLM versions (renamed families fall back to their old names).

Reading a real capture takes a small fraction of prometheus_client's parser (benchmarks/).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

GAUGES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:gpu_cache_usage_perc": "kv_cache_usage_old",  # before vLLM 0.10
}
COUNTERS = {
    "vllm:prompt_tokens_total": "prompt_tokens",
    "vllm:generation_tokens_total": "generation_tokens",
    "vllm:num_preemptions_total": "preemptions",
    "vllm:spec_decode_num_drafts_total": "spec_drafts",
    "vllm:spec_decode_num_draft_tokens_total": "spec_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens_total": "spec_accepted_tokens",
}
LABELLED_COUNTERS = {
    "vllm:prompt_tokens_by_source_total": ("prompt_tokens_by_source", "source"),
    "vllm:request_success_total": ("request_success", "finished_reason"),
}
HISTOGRAMS = {
    "vllm:time_to_first_token_seconds": "ttft",
    "vllm:inter_token_latency_seconds": "itl",
    "vllm:time_per_output_token_seconds": "itl_old",  # renamed to inter_token_latency in 0.11
    "vllm:e2e_request_latency_seconds": "e2e",
    "vllm:request_queue_time_seconds": "queue",
    "vllm:request_prefill_time_seconds": "prefill",
    "vllm:request_decode_time_seconds": "decode",
    "vllm:iteration_tokens_total": "step_tokens",  # one observation per engine step
}
_SUFFIXES = ("_bucket", "_sum", "_count")


class MetricsParseError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}")


@dataclass
class Histogram:
    """Cumulative buckets (upper bound, count), ascending, the last one +Inf."""

    buckets: list[tuple[float, float]] = field(default_factory=list)
    sum: float = 0.0
    count: float = 0.0

    def add(self, other: Histogram) -> None:
        if not self.buckets:
            self.buckets = list(other.buckets)
        elif [b for b, _ in self.buckets] == [b for b, _ in other.buckets]:
            self.buckets = [(b, c + d) for (b, c), (_, d) in zip(self.buckets, other.buckets, strict=True)]
        self.sum += other.sum
        self.count += other.count


@dataclass
class EngineMetrics:
    running: float = 0.0
    waiting: float = 0.0
    kv_cache_usage: float | None = None
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    preemptions: float = 0.0
    spec_drafts: float = 0.0
    spec_draft_tokens: float = 0.0
    spec_accepted_tokens: float = 0.0
    prompt_tokens_by_source: dict[str, float] = field(default_factory=dict)
    request_success: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)

    @property
    def requests_finished(self) -> float:
        return sum(self.request_success.values())

    @property
    def engine_steps(self) -> float:
        steps = self.histograms.get("step_tokens")
        return steps.count if steps else 0.0

    @property
    def progress(self) -> tuple[float, float, float, float]:
        """What moves when the engine works: tokens generated, prompt tokens taken in, engine steps,
        and the KV cache in use. vLLM (0.32, V1) counts prompt tokens and steps only when a request's
        prefill ends; a chunked prefill shows itself meanwhile only by taking KV blocks chunk by chunk
        (seen on the CPU tier: running 1, prompt tokens still, usage 0.05 % → 0.13 %)."""
        return (self.generation_tokens, self.prompt_tokens, self.engine_steps, self.kv_cache_usage or 0.0)


@dataclass
class VllmMetrics:
    engines: dict[str, EngineMetrics]
    total: EngineMetrics
    model_names: tuple[str, ...]
    classes: dict[str, EngineMetrics] = field(default_factory=dict)  # the proxy's, by prompt length
    backends: dict[str, str] = field(default_factory=dict)  # a proxy's view: host:port → its state there


def _labels(text: str) -> dict[str, str]:
    return dict(_LABEL.findall(text))


def _engine(engines: dict[str, EngineMetrics], labels: dict[str, str]) -> EngineMetrics:
    key = labels.get("engine", "0")  # early V1 exported no engine label
    found = engines.get(key)
    if found is None:
        found = engines[key] = EngineMetrics()
    return found


def parse_metrics(text: str) -> VllmMetrics:
    """Read the families the console needs; everything else is skipped unread."""
    engines: dict[str, EngineMetrics] = {}
    models: dict[str, None] = {}
    old_kv: dict[str, float] = {}
    old_itl: dict[str, Histogram] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("vllm:"):
            if line and line[0] != "#" and not line[0].isalpha():
                raise MetricsParseError(number, f"not a metric sample: {line[:60]!r}")
            continue
        brace = line.find("{")
        if brace == -1:
            name, _, rest = line.partition(" ")
            label_text = ""
        else:
            close = line.rfind("}")
            if close < brace:
                raise MetricsParseError(number, f"unbalanced labels: {line[:60]!r}")
            name, label_text, rest = line[:brace], line[brace + 1 : close], line[close + 1 :]
        base = name
        suffix = ""
        if name not in GAUGES and name not in COUNTERS and name not in LABELLED_COUNTERS:
            for candidate in _SUFFIXES:
                if name.endswith(candidate) and name[: -len(candidate)] in HISTOGRAMS:
                    base, suffix = name[: -len(candidate)], candidate
                    break
            else:
                continue
        try:
            value = float(rest.split()[0])
        except (IndexError, ValueError):
            raise MetricsParseError(number, f"no number after {name}: {line[:80]!r}") from None
        labels = _labels(label_text)
        if "model_name" in labels:
            models[labels["model_name"]] = None
        engine = _engine(engines, labels)
        if base in GAUGES:
            attr = GAUGES[base]
            if attr == "kv_cache_usage_old":
                old_kv[labels.get("engine", "0")] = value
            else:
                setattr(engine, attr, value)
        elif base in COUNTERS:
            setattr(engine, COUNTERS[base], value)
        elif base in LABELLED_COUNTERS:
            attr, label = LABELLED_COUNTERS[base]
            getattr(engine, attr)[labels.get(label, "")] = value
        else:
            key = HISTOGRAMS[base]
            target = old_itl if key == "itl_old" else engine.histograms
            slot = labels.get("engine", "0") if key == "itl_old" else key
            hist = target.get(slot)
            if hist is None:
                hist = target[slot] = Histogram()
            if suffix == "_bucket":
                bound = labels.get("le", "+Inf")
                hist.buckets.append((math.inf if bound in ("+Inf", "Inf") else float(bound), value))
            elif suffix == "_sum":
                hist.sum = value
            else:
                hist.count = value
    for key, engine in engines.items():
        if engine.kv_cache_usage is None and key in old_kv:
            engine.kv_cache_usage = old_kv[key]
        if "itl" not in engine.histograms and key in old_itl:
            engine.histograms["itl"] = old_itl[key]
        for hist in engine.histograms.values():
            hist.buckets.sort()
    return VllmMetrics(engines, _sum(engines.values()), tuple(models))


def _sum(engines: Iterable[EngineMetrics]) -> EngineMetrics:
    """All engines as one: counts and histograms add up, KV-cache usage is their mean."""
    total = EngineMetrics()
    usages = []
    for engine in engines:
        for attr in (
            "running",
            "waiting",
            "prompt_tokens",
            "generation_tokens",
            "preemptions",
            "spec_drafts",
            "spec_draft_tokens",
            "spec_accepted_tokens",
        ):
            setattr(total, attr, getattr(total, attr) + getattr(engine, attr))
        for attr in ("prompt_tokens_by_source", "request_success"):
            into: dict[str, float] = getattr(total, attr)
            for key, value in getattr(engine, attr).items():
                into[key] = into.get(key, 0.0) + value
        for key, hist in engine.histograms.items():
            total.histograms.setdefault(key, Histogram()).add(hist)
        if engine.kv_cache_usage is not None:
            usages.append(engine.kv_cache_usage)
    total.kv_cache_usage = sum(usages) / len(usages) if usages else None
    return total
