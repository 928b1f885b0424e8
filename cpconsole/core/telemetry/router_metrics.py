"""vllm-router's Prometheus endpoint (0.1.17) read into the shape the console shows a proxy in, with
only what it exports: the PD requests it answered (its request-duration observations) and those it
counts as errors. Its duration of a streamed request ends when the answer starts (measured on the
simulator: 0.09 s of a 1.69 s stream), so it is neither a time to first token nor an end-to-end
time: only its count is used, and the console shows no TTFT or E2E for it (never a figure made up)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from .vllm_metrics import EngineMetrics, Histogram, VllmMetrics

DURATION = "vllm_router_pd_request_duration_seconds"  # one observation per PD request answered
ROUTED = "routed"  # the histogram key its observations go under (view.TrafficFigures counts it)
ERRORS = "vllm_router_pd_errors_total"
HEALTH = "vllm_router_worker_health"


def parse_router_metrics(text: str) -> VllmMetrics:
    """Raises ValueError on text that is not Prometheus exposition (as the server poller expects)."""
    total = EngineMetrics()
    routed = Histogram()
    buckets: dict[float, float] = {}
    errors = 0.0
    backends: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == DURATION + "_sum":
                routed.sum += sample.value
            elif sample.name == DURATION + "_count":
                routed.count += sample.value
            elif sample.name == DURATION + "_bucket":
                bound = float("inf") if sample.labels["le"] == "+Inf" else float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == ERRORS:
                errors += sample.value
            elif sample.name == HEALTH:  # 1 healthy, 0 not, as its health checks found the worker
                backends[sample.labels["worker"].split("://", 1)[-1]] = "healthy" if sample.value == 1 else "unhealthy"
    routed.buckets = sorted(buckets.items()) or [(float("inf"), routed.count)]
    total.histograms[ROUTED] = routed
    total.request_success = {"ok": routed.count, "error": errors}
    return VllmMetrics(engines={"proxy": total}, total=total, model_names=(), classes={}, backends=backends)
