"""vllm-router in front of real vLLM: the CPU tier's 1P1D with `proxy.kind: vllm-router` (its binary
from the lock, in this environment) comes up through the router's /workers gate, smoke passes
through it, and a long prompt's KV reaches the decode through ExampleConnector though the prefill
returns no kv_transfer_params (the router hands on what it got)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.profile import load_profile_text

from ..loopback import Block
from .test_cpu_1p1d import HOME, cpconsole, tier_profile

pytestmark = pytest.mark.real_vllm

ROUTER = Path(sys.executable).with_name("vllm-router")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LaunchPlan]]:
    if not Path(HOME, "vllm-venv", "bin", "vllm").exists():
        pytest.fail(f"no vLLM test bed in {HOME}: run scripts/setup-vllm (scripts/test-vllm does)")
    tmp = tmp_path_factory.mktemp("router")
    kv = Path(tempfile.mkdtemp(prefix="cpconsole-kv-", dir="/dev/shm"))
    text = tier_profile("cpu-1p1d", Block.fresh(), kv, tmp)
    text = text.replace("  command: [python3, -m, cpconsole.proxy]\n", f"  kind: vllm-router\n  command: [{ROUTER}]\n")
    assert "kind: vllm-router" in text
    profile = tmp / "cpu-router.yaml"
    profile.write_text(text)
    try:
        yield profile, build_plan(load_profile_text(text))
    finally:
        cpconsole("down", str(profile))
        shutil.rmtree(kv, ignore_errors=True)


def test_smoke_through_the_router_and_the_kv_reaches_the_decode(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, plan = deployment
    up = cpconsole("up", str(profile))
    assert up.returncode == 0, up.stdout + up.stderr[-3000:]
    smoke = cpconsole("smoke", str(profile), "--json")
    assert smoke.returncode == 0 and json.loads(smoke.stdout)["passed"], smoke.stdout + smoke.stderr[-2000:]
    prompt = " ".join(f"word{i}" for i in range(300))  # whole blocks: ExampleConnector stores only those
    body = {"model": plan.model_name, "prompt": prompt, "max_tokens": 4}
    answer = httpx.post(plan.process("proxy").base_url + "/v1/completions", json=body, timeout=120, trust_env=False)
    assert answer.status_code == 200, answer.text
    metrics = httpx.get(plan.process("decode-0").base_url + "/metrics", timeout=10, trust_env=False).text
    (line,) = [
        m for m in metrics.splitlines() if m.startswith("vllm:prompt_tokens_by_source_total{") and "external" in m
    ]
    assert float(line.split()[-1]) > 0, line
