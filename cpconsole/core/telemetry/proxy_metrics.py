"""cpconsole's proxy's /metrics (proxy/metrics.py) read into the same shape as an API server's, so
one window and one set of figures serve both: its TTFT is what clients wait for end to end (prefill,
KV hand-off, first decode step), its requests are real traffic only (it counts the console's probes
apart). Backends are summed; the outcomes stand where an API server's finish reasons do. Latencies
are also kept per prompt-length class (PROMPT_CLASSES): a 128k prefill and a chat turn do not share
one TTFT worth reading."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from .vllm_metrics import EngineMetrics, Histogram, VllmMetrics

PREFIX = "cpconsole_proxy_"
# prompt-length classes the proxy labels its latencies with: (label, prompt tokens below), ascending
PROMPT_CLASSES = (("<8k", 8 * 1024), ("8k-64k", 64 * 1024), (">=64k", None))
UNKNOWN_CLASS = "?"  # the prefill said no prompt length


def prompt_class(tokens: int | None) -> str:
    if tokens is None:
        return UNKNOWN_CLASS
    return next(label for label, below in PROMPT_CLASSES if below is None or tokens < below)


HISTOGRAMS = {"ttft_seconds": "ttft", "prefill_seconds": "prefill", "handoff_seconds": "handoff"}
HISTOGRAMS |= {"tpot_seconds": "itl", "e2e_seconds": "e2e"}


def parse_proxy_metrics(text: str) -> VllmMetrics:
    """Raises ValueError on text that is not Prometheus exposition (as the server poller expects)."""
    total = EngineMetrics()
    classes: dict[str, EngineMetrics] = {}
    buckets: dict[tuple[str, str], dict[float, float]] = {}  # (class or "", histogram) → bound → count
    backends: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        short = family.name.removeprefix(PREFIX)
        for sample in family.samples:
            if short == "backend_state" and sample.value == 1:  # one state a backend is in: healthy, open, draining
                backends[sample.labels["instance"]] = sample.labels["state"]
            elif family.name.startswith(PREFIX + "requests") and sample.name.endswith("_total"):
                outcome = sample.labels.get("outcome", "?")
                total.request_success[outcome] = total.request_success.get(outcome, 0.0) + sample.value
            elif short == "prompt_tokens" and sample.name.endswith("_sum"):
                total.prompt_tokens += sample.value
            elif short == "output_tokens" and sample.name.endswith("_total"):
                total.generation_tokens += sample.value
            elif short in HISTOGRAMS:
                key = HISTOGRAMS[short]
                label = sample.labels.get("prompt")
                engines = [total] if label is None else [total, classes.setdefault(label, EngineMetrics())]
                for engine, where in zip(engines, ("", label), strict=False):
                    hist = engine.histograms.setdefault(key, Histogram())
                    if sample.name.endswith("_bucket"):
                        bound = math.inf if sample.labels["le"] == "+Inf" else float(sample.labels["le"])
                        per = buckets.setdefault((where or "", key), {})
                        per[bound] = per.get(bound, 0.0) + sample.value
                    elif sample.name.endswith("_sum"):
                        hist.sum += sample.value
                    elif sample.name.endswith("_count"):
                        hist.count += sample.value
    for (where, key), per in buckets.items():
        (classes[where] if where else total).histograms[key].buckets = sorted(per.items())
    return VllmMetrics(engines={"proxy": total}, total=total, model_names=(), classes=classes, backends=backends)
