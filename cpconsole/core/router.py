"""The vLLM project's Rust router (`vllm-router` on PyPI) as the deployment's proxy: its command line
from the profile's instances, and its readiness as srtctl reads it — the router's /workers lists
every API server of the plan, each healthy. Facts of vllm-router 0.1.17 (its router_args.py, its
/workers answer) are cited where used."""

from __future__ import annotations

from typing import Any

from .profile.schema import ROUTER_KV_MODE, Profile
from .profile.topology import api_servers, node_address

ROUTER_TESTED = "0.1.17"  # the vllm-router whose arguments cpconsole renders, and tests against


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def router_argv(profile: Profile) -> list[str]:
    """vllm-router in PD mode: every prefill API server (no bootstrap port) and every decode one,
    the kv-connector mode, its Prometheus endpoint on the proxy's address (the profile's args follow)."""
    proxy = profile.proxy
    assert proxy is not None
    bind = proxy.bind or node_address(profile, proxy.node)
    argv = [*proxy.command, "--host", bind, "--port", str(proxy.port), "--vllm-pd-disaggregation"]
    for host, port in api_servers(profile, "prefill"):
        argv += ["--prefill", _url(host, port), "none"]
    for host, port in api_servers(profile, "decode"):
        argv += ["--decode", _url(host, port)]
    argv += [
        "--kv-connector",
        ROUTER_KV_MODE,
        "--prometheus-host",
        bind,
        "--prometheus-port",
        str(proxy.router_metrics_port),
    ]
    return argv


def not_ready(answer: Any, expected: list[str]) -> str | None:
    """Why the router's /workers answer is not ready (None: every planned worker listed, healthy).
    Its shape: {"workers": [{"url", "worker_type", "is_healthy", …}], "total", "stats"}."""
    try:
        listed = {str(w["url"]): bool(w["is_healthy"]) for w in answer["workers"]}
    except (KeyError, TypeError):
        return "its /workers answer is not a worker list"
    missing = [url for url in expected if url not in listed]
    if missing:
        return f"the router does not list {', '.join(missing)}"
    sick = [url for url in expected if not listed[url]]
    return f"the router holds {', '.join(sick)} unhealthy" if sick else None
