"""cpconsole's proxy's /metrics (proxy/metrics.py) read into the same shape as an API server's, so
one window and one set of figures serve both: its TTFT is what clients wait for end to end (prefill,
KV hand-off, first decode step), its requests are real traffic only (it counts the console's probes
apart). Backends are summed; the outcomes stand where an API server's finish reasons do."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from .vllm_metrics import EngineMetrics, Histogram, VllmMetrics

PREFIX = "cpconsole_proxy_"
HISTOGRAMS = {"ttft_seconds": "ttft", "prefill_seconds": "prefill", "handoff_seconds": "handoff"}
HISTOGRAMS |= {"tpot_seconds": "itl", "e2e_seconds": "e2e"}


def parse_proxy_metrics(text: str) -> VllmMetrics:
    """Raises ValueError on text that is not Prometheus exposition (as the server poller expects)."""
    engine = EngineMetrics()
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        short = family.name.removeprefix(PREFIX)
        for sample in family.samples:
            if family.name.startswith(PREFIX + "requests") and sample.name.endswith("_total"):
                outcome = sample.labels.get("outcome", "?")
                engine.request_success[outcome] = engine.request_success.get(outcome, 0.0) + sample.value
            elif short == "prompt_tokens" and sample.name.endswith("_sum"):
                engine.prompt_tokens += sample.value
            elif short == "output_tokens" and sample.name.endswith("_total"):
                engine.generation_tokens += sample.value
            elif short in HISTOGRAMS:
                key = HISTOGRAMS[short]
                hist = engine.histograms.setdefault(key, Histogram())
                if sample.name.endswith("_bucket"):
                    bound = math.inf if sample.labels["le"] == "+Inf" else float(sample.labels["le"])
                    per = buckets.setdefault(key, {})
                    per[bound] = per.get(bound, 0.0) + sample.value
                elif sample.name.endswith("_sum"):
                    hist.sum += sample.value
                elif sample.name.endswith("_count"):
                    hist.count += sample.value
    for key, per in buckets.items():
        engine.histograms[key].buckets = sorted(per.items())
    return VllmMetrics(engines={"proxy": engine}, total=engine, model_names=())
