"""The smoke suite `cpconsole smoke` runs: every server's health, the probe path (a 1-token request
to each prefill master, each decode and through the proxy, so a broken hop shows by name), a short
completion, and the long-context needle at chosen depths. Every check is a value, pass or fail."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from ..httpclient import status_text
from ..plan import LaunchPlan, ProcessPlan
from ..telemetry.health import probe
from .accuracy import run_accuracy
from .client import RequestResult, percentile, stream_request
from .prompts import HELLO, needle_prompt

Kind = Literal["health", "probe", "completion", "needle", "accuracy"]


@dataclass(frozen=True)
class SmokeCheck:
    kind: Kind
    target: str
    passed: bool
    detail: str  # what was seen: latency, the error, the answer's start
    latency_ms: float | None = None
    result: RequestResult | None = None
    depth: float | None = None
    passphrase: str | None = None
    prompt_tokens_measured: bool = False  # counted by the server's /tokenize, not estimated

    @property
    def name(self) -> str:
        if self.kind == "needle":
            return f"needle {self.depth:.0%} via {self.target}"
        if self.kind == "accuracy":
            return f"accuracy via {self.target}"
        return f"{self.kind} {self.target}"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "passed": self.passed,
            "detail": self.detail,
            "latency_ms": self.latency_ms,
        }
        if self.result is not None:
            r = self.result
            out |= {
                "error": r.error,
                "request_id": r.request_id,
                "prompt_tokens": r.prompt_tokens,
                "output_tokens": r.output_tokens,
                "ttft_s": r.ttft_s,
                "tpot_s": r.tpot_s,
                "itl_p50_s": percentile(r.itl_s, 0.5),
                "itl_p99_s": percentile(r.itl_s, 0.99),
                "e2e_s": r.e2e_s,
                "tokens_per_s": r.tokens_per_s,
                "finish_reason": r.finish_reason,
                "answer": r.text,
            }
        if self.kind == "needle":
            out |= {
                "depth": self.depth,
                "passphrase": self.passphrase,
                "prompt_tokens_measured": self.prompt_tokens_measured,
            }
        return out


def _servers(plan: LaunchPlan) -> list[ProcessPlan]:
    return [p for p in plan.processes if p.http_port]


def _error_text(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"{status_text(exc.response.status_code)}: {exc.response.text.strip()[:200]}"
    return str(exc) or type(exc).__name__


async def _health(http: httpx.AsyncClient, proc: ProcessPlan, timeout: float) -> SmokeCheck:
    started = time.monotonic()
    try:
        answer = await http.get(proc.base_url + proc.health_path, timeout=timeout)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        return SmokeCheck("health", proc.name, False, _error_text(exc))
    latency = (time.monotonic() - started) * 1000
    return SmokeCheck("health", proc.name, True, f"{answer.status_code} in {latency:.0f} ms", latency)


async def _probe(http: httpx.AsyncClient, plan: LaunchPlan, proc: ProcessPlan, timeout: float) -> SmokeCheck:
    try:
        latency = await probe(http, proc.base_url, plan.model_name, timeout=timeout)
    except httpx.HTTPError as exc:
        return SmokeCheck("probe", proc.name, False, _error_text(exc))
    return SmokeCheck("probe", proc.name, True, f"1 token in {latency:.0f} ms", latency)


async def count_tokens(http: httpx.AsyncClient, plan: LaunchPlan, prompt: str) -> int | None:
    """The prompt's length by a prefill server's /tokenize (the proxy has none); None if none answers."""
    for proc in (p for p in _servers(plan) if p.role in ("prefill", "colocated")):
        try:
            answer = await http.post(
                proc.base_url + "/tokenize", json={"model": plan.model_name, "prompt": prompt}, timeout=60
            )
            answer.raise_for_status()
            return int(answer.json()["count"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            continue
    return None


async def probe_path(plan: LaunchPlan, http: httpx.AsyncClient, timeout: float = 120.0) -> list[SmokeCheck]:
    """A 1-token request to every hop, in request order: prefill masters, decodes, then the proxy."""
    order = {"prefill": 0, "colocated": 0, "decode": 1, "proxy": 2}
    hops = sorted(_servers(plan), key=lambda p: order.get(p.role, 3))
    return list(await asyncio.gather(*(_probe(http, plan, p, timeout=timeout) for p in hops)))


def _answer_detail(result: RequestResult) -> str:
    return result.error or repr(result.text.strip()[:80])


async def needle_checks(
    plan: LaunchPlan,
    http: httpx.AsyncClient,
    *,
    target: str,
    tokens: int,
    depths: Sequence[float],
    max_tokens: int,
    timeout: float = 600.0,
) -> list[SmokeCheck]:
    """The passphrase at each depth of a `tokens`-long prompt; passed only when it comes back."""
    base = plan.process(target).base_url
    checks = []
    for depth in depths:
        needle = needle_prompt(tokens, depth)
        measured = await count_tokens(http, plan, needle.prompt)
        result = await stream_request(
            http, base, model=plan.model_name, prompt=needle.prompt, max_tokens=max_tokens, timeout=timeout
        )
        if measured is not None and result.prompt_tokens is None:
            result = dataclasses.replace(result, prompt_tokens=measured)
        passed = result.ok and needle.passed(result.text)
        detail = (
            "the passphrase came back"
            if passed
            else result.error or f"no passphrase in the answer {result.text.strip()[:80]!r}"
        )
        checks.append(
            SmokeCheck("needle", target, passed, detail, None, result, depth, needle.passphrase, measured is not None)
        )
    return checks


async def run_suite(
    plan: LaunchPlan,
    http: httpx.AsyncClient,
    *,
    target: str = "proxy",
    needle_tokens: int | None = None,
    depths: Sequence[float] = (0.5,),
    max_tokens: int = 64,
    timeout: float = 600.0,
    accuracy: AccuracyGate | None = None,
) -> list[SmokeCheck]:
    """Health of every server, the probe path, a completion, the needle(s) when asked, and the
    profile's quick accuracy check when it has one (`accuracy`)."""
    servers = _servers(plan)
    base = plan.process(target).base_url
    checks = list(await asyncio.gather(*(_health(http, p, timeout=10) for p in servers)))
    checks += await probe_path(plan, http, timeout=min(timeout, 120))
    hello = await stream_request(
        http,
        base,
        model=plan.model_name,
        messages=[{"role": "user", "content": HELLO}],
        max_tokens=max_tokens,
        timeout=timeout,
    )
    checks.append(SmokeCheck("completion", target, hello.ok, _answer_detail(hello), None, hello))
    if needle_tokens:
        checks += await needle_checks(
            plan, http, target=target, tokens=needle_tokens, depths=depths, max_tokens=max_tokens, timeout=timeout
        )
    if accuracy is not None:
        checks.append(await accuracy_check(plan, http, target, accuracy))
    return checks


@dataclass(frozen=True)
class AccuracyGate:
    """The profile's smoke.accuracy, its answer budget resolved (accuracy.answer_budget)."""

    dataset: str
    limit: int
    min: float
    max_tokens: int


async def accuracy_check(plan: LaunchPlan, http: httpx.AsyncClient, target: str, gate: AccuracyGate) -> SmokeCheck:
    """The quick accuracy check as a smoke check: passed at the profile's minimum, no request failed."""
    try:
        run = await run_accuracy(
            plan, http, dataset=gate.dataset, target=target, limit=gate.limit, max_tokens=gate.max_tokens
        )
    except ValueError as exc:  # a dataset that is not built in
        return SmokeCheck("accuracy", target, False, str(exc))
    failed = sum(1 for item in run.items if item.error)
    right = sum(item.correct for item in run.items)
    detail = f"{gate.dataset}: {right}/{run.samples} correct, {run.accuracy:.1f} % (at least {gate.min:g} % asked)"
    if failed:
        detail += f"; {failed} request(s) failed"
    return SmokeCheck("accuracy", target, run.accuracy >= gate.min and not failed, detail)
