"""The demo as shipped: the whole 1P1D topology on this machine, answering through the proxy
within 10 s of starting it (start-up duration as in profiles/demo.yaml)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from .simcluster import DEMO, cluster


async def test_demo_answers_through_the_proxy_within_ten_seconds(tmp_path: Path) -> None:
    assert 'CPCONSOLE_SIM_STARTUP_S: "4"' in DEMO
    c = cluster(tmp_path, startup="4")
    try:
        await asyncio.gather(*(c.start(name) for name in ("prefill-0", "prefill-1", "decode-0", "proxy")))
        await asyncio.gather(c.wait_http("prefill-0"), c.wait_http("decode-0"), c.wait_http("proxy", "/healthcheck"))
        body = {
            "model": "deepseek_v3",
            "messages": [{"role": "user", "content": "Say hello."}],
            "stream": True,
            "max_tokens": 32,
        }
        chunks = 0
        async with (
            httpx.AsyncClient(trust_env=False, timeout=10) as client,
            client.stream("POST", c.url("proxy") + "/v1/chat/completions", json=body) as answer,
        ):
            async for line in answer.aiter_lines():
                chunks += line.startswith("data: {")
    finally:
        await c.stop_all()
    assert chunks > 2


def test_demo_over_ssh_is_the_demo_with_ssh_transport() -> None:
    from cpconsole.core.profile import load_profile

    from .conftest import PROFILES

    local = load_profile(PROFILES / "demo.yaml").profile
    ssh = load_profile(PROFILES / "demo-ssh.yaml").profile
    assert ssh.instances == local.instances
    assert ssh.nodes == local.nodes and ssh.defaults.env == local.defaults.env
    assert (ssh.defaults.transport, local.defaults.transport) == ("ssh", "local")
    assert (
        ssh.defaults.vllm_command == ("cpconsole-sim", "vllm")
        and ssh.proxy
        and ssh.proxy.command == ("cpconsole-proxy",)
    )


def test_real_vllm_over_ssh_is_the_cpu_profile_with_ssh_transport() -> None:
    from cpconsole.core.profile import load_profile

    from .conftest import PROFILES

    local = load_profile(PROFILES / "cpu-1p1d.yaml").profile
    ssh = load_profile(PROFILES / "cpu-1p1d-ssh.yaml").profile
    assert ssh.instances == local.instances and ssh.nodes == local.nodes
    assert ssh.defaults.model_copy(update={"transport": "local", "ssh": local.defaults.ssh}) == local.defaults
    assert (ssh.defaults.transport, local.defaults.transport) == ("ssh", "local")
    assert ssh.proxy and local.proxy and ssh.proxy.command == ("cpconsole-proxy",)
    assert (ssh.model, ssh.bench, ssh.timeouts) == (local.model, local.bench, local.timeouts)
