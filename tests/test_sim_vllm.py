"""The simulated `vllm serve`, started from the rendered demo plan like the console starts it:
flags, start order across nodes, HTTP and SSE shapes, PD hand-off, metrics, faults."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cpconsole.core.diagnosis.explain import classify
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile
from cpconsole.sim.args import ServeArgumentError, parse
from cpconsole.sim.faults import real_line

from .conftest import FIXTURES, PROFILES
from .simcluster import Cluster, cluster


def sim(*argv: str, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cpconsole.sim", "vllm", "serve", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture
async def demo(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = cluster(tmp_path)
    yield c
    await c.stop_all()


# ---------------------------------------------------------------- flags


def test_every_flag_of_the_guide_is_accepted() -> None:
    plan = build_plan(load_profile(PROFILES / "deepseek-v3.1-cp-1p1d.yaml"))
    for proc in plan.processes:
        if proc.role != "proxy":
            args = parse(list(proc.argv[2:]))  # after `vllm serve`
            assert args.model_name == "deepseek_v3"
    prefill = parse(list(plan.process("prefill-1").argv[2:]))
    assert (prefill.headless, prefill.node_rank, prefill.world_size, prefill.kv_role) == (True, 1, 32, "kv_producer")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-tp", "16", "-dcp", "6"], "tensor_parallel_size (16) must be divisible by decode_context_parallel_size (6)"),
        (
            [
                "-tp",
                "16",
                "-dcp",
                "8",
                "--kv-transfer-config",
                '{"kv_connector":"MooncakeConnectorV1"}',
                "--block-size",
                "128",
            ],
            "cp_kv_cache_interleave_size(1) and block_size(128) needs to be equal if use pcp or dcp > 1",
        ),
        (["--frobnicate"], "vllm serve: error: unrecognized arguments: --frobnicate"),
        (["--max-model-len", "lots"], "argument --max-model-len: invalid int value: 'lots'"),
    ],
)
def test_what_vllm_refuses_the_simulator_refuses(flags: list[str], message: str) -> None:
    with pytest.raises(ServeArgumentError, match=None) as caught:
        parse(["/m", *flags])
    assert message in str(caught.value)


def test_refusals_exit_like_vllm() -> None:
    done = sim("/m", "--frobnicate")
    assert done.returncode == 2 and "usage: vllm serve" in done.stderr
    done = sim("/m", "-tp", "16", "-dcp", "6")
    assert done.returncode == 1 and done.stderr.startswith("Traceback (most recent call last):")


def test_underscore_flags_read_like_dashes() -> None:
    args = parse(["/m", "--max_model_len", "1000", "--compilation_config", '{"cudagraph_mode":"FULL_DECODE_ONLY"}'])
    assert args.max_model_len == 1000 and args.compilation_config == {"cudagraph_mode": "FULL_DECODE_ONLY"}


# ---------------------------------------------------------------- start order across nodes


def master(demo: Cluster) -> str:
    """The prefill master's node address (node-rank 0's)."""
    return demo.plan.node("prefill-a").address


async def test_master_is_not_ready_until_the_headless_rank_joins(demo: Cluster) -> None:
    await demo.start("prefill-0")
    await demo.wait_listening(master(demo), 7001)  # it waits for its headless rank …
    with pytest.raises(httpx.ConnectError):  # … its HTTP port bound but not listening, as vLLM
        httpx.get(demo.url("prefill-0") + "/health", trust_env=False)
    assert "Starting vLLM API server" not in demo.log("prefill-0")
    await demo.start("prefill-1")
    await demo.wait_http("prefill-0")
    assert f"headless multiproc executor, with head node address {master(demo)}" in demo.log("prefill-1")


async def test_headless_first_waits_for_the_master_like_torch(demo: Cluster) -> None:
    await demo.start("prefill-1")
    await demo.wait_log("prefill-1", f"The client socket has failed to connect to [{master(demo)}]:7001 (errno: 111")
    await demo.start("prefill-0")
    await demo.wait_http("prefill-0")


async def test_headless_rank_dies_when_its_master_goes(demo: Cluster) -> None:
    await demo.start("prefill-0")
    await demo.start("prefill-1")
    await demo.wait_http("prefill-0")
    await demo.node.stop(demo.handles["prefill-0"], grace=3)
    assert await demo.wait_exit("prefill-1") == 1
    log = demo.log("prefill-1")
    assert "EngineCore encountered a fatal error." in log and f"the master {master(demo)}:7001 is gone" in log


async def test_startup_log_reads_like_vllm(demo: Cluster) -> None:
    await demo.start("decode-0")
    await demo.wait_http("decode-0")
    log = demo.log("decode-0")
    for expected in (
        "\x1b[0;36m(APIServer pid=",
        "[api_server.py:1351] vLLM API server version 0.13.0",
        "non-default args: {",
        "Loading safetensors checkpoint shards: 100% Completed | 163/163",
        "GPU KV cache size: ",
        "Maximum concurrency for 136,000 tokens per request:",
        f"Starting vLLM API server 0 on {demo.url('decode-0')}",
        "INFO:     Started server process [",
        "INFO:     Application startup complete.",
    ):
        assert expected in log, expected


# ---------------------------------------------------------------- HTTP


async def test_endpoints_and_errors(demo: Cluster) -> None:
    await demo.start("decode-0")
    await demo.wait_http("decode-0")
    async with httpx.AsyncClient(base_url=demo.url("decode-0"), trust_env=False, timeout=10) as client:
        assert (await client.get("/version")).json() == {"version": "0.13.0"}
        models = (await client.get("/v1/models")).json()
        assert models["data"][0]["id"] == "deepseek_v3" and models["data"][0]["max_model_len"] == 136000
        assert (await client.post("/tokenize", json={"prompt": "Hello, world"})).json()["count"] == 3
        missing = await client.post("/v1/completions", json={"model": "gpt-4", "prompt": "hi"})
        assert missing.status_code == 404 and missing.json()["error"]["message"] == "The model `gpt-4` does not exist."
        long = await client.post("/v1/completions", json={"prompt": "word " * 136_000, "max_tokens": 10})
        assert long.status_code == 400 and "maximum context length is 136000 tokens" in long.json()["error"]["message"]
        too_long = (await client.post("/v1/completions", json={"prompt": "word " * 140_000})).json()["error"]
        assert too_long["param"] == "input_tokens"  # vLLM 0.32's wording when the prompt alone does not fit
        assert "your prompt contains at least 136001 input tokens" in too_long["message"]
        done = (await client.post("/v1/completions", json={"prompt": "hi there", "max_tokens": 5})).json()
        assert done["object"] == "text_completion" and done["usage"]["completion_tokens"] == 5
        assert done["choices"][0]["finish_reason"] == "length"


def chunk_shape(chunk: dict[str, object]) -> tuple[str, ...]:
    choices = chunk.get("choices") or [{}]
    assert isinstance(choices, list)
    return tuple(sorted(chunk)) + tuple(sorted(choices[0]))


async def test_chat_stream_is_shaped_like_real_vllm(demo: Cluster) -> None:
    real = [
        json.loads(line[6:])
        for line in (FIXTURES / "vllm/chat-stream.sse").read_text().splitlines()
        if line.startswith("data: {")
    ]
    await demo.start("decode-0")
    await demo.wait_http("decode-0")
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 12,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        answer = await client.post(demo.url("decode-0") + "/v1/chat/completions", json=body)
    assert answer.headers["content-type"] == "text/event-stream; charset=utf-8"
    events = [line for line in answer.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    ours = [json.loads(e[6:]) for e in events[:-1]]
    # first (role), content chunks, the finish chunk, the usage chunk: the real stream's shapes
    assert chunk_shape(ours[0]) == chunk_shape(real[0])
    assert chunk_shape(ours[1]) == chunk_shape(real[1])
    assert set(ours[-2]["choices"][0]) >= {"finish_reason", "delta", "index"}
    assert ours[-2]["choices"][0]["finish_reason"] == "length"
    assert ours[-1]["choices"] == [] and ours[-1]["usage"]["completion_tokens"] == 12
    assert sorted(ours[-1]["usage"]) == sorted({*real[-1]["usage"], "prompt_tokens_details"})
    assert sum(len(o["choices"][0]["delta"].get("content", "")) > 0 for o in ours[1:-2]) >= 4  # MTP: < 12 chunks


async def test_needle_answer_only_when_the_prompt_fits(demo: Cluster) -> None:
    await demo.start("decode-0")
    await demo.wait_http("decode-0")
    filler = "The weather report says clouds. " * 200
    prompt = f"{filler}The passphrase is amber falcon.\n{filler}\nWhat is the passphrase?"
    async with httpx.AsyncClient(base_url=demo.url("decode-0"), trust_env=False, timeout=10) as client:
        fits = (await client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 32})).json()
        assert "amber falcon" in fits["choices"][0]["text"] and fits["choices"][0]["finish_reason"] == "stop"
        too_long = await client.post("/v1/completions", json={"prompt": filler * 120 + prompt, "max_tokens": 32})
        assert too_long.status_code == 400
        unasked = (await client.post("/v1/completions", json={"prompt": filler, "max_tokens": 8})).json()
        assert "passphrase" not in unasked["choices"][0]["text"]


async def test_pd_hand_off_and_metrics(demo: Cluster) -> None:
    for name in ("prefill-0", "prefill-1", "decode-0"):
        await demo.start(name)
    await demo.wait_http("prefill-0")
    await demo.wait_http("decode-0")
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        prefill = await client.post(
            demo.url("prefill-0") + "/v1/completions",
            json={
                "prompt": " ".join(["one two three"] * 100),
                "max_tokens": 1,
                "stream": False,
                "kv_transfer_params": {"do_remote_decode": True, "do_remote_prefill": False},
            },
        )
        params = prefill.json()["kv_transfer_params"]
        assert params["do_remote_prefill"] is True and params["remote_engine_id"] == "0"
        assert (params["remote_host"], params["remote_port"], params["tp_size"]) == (master(demo), 36000, 16)
        assert len(params["remote_block_ids"]) == 3  # 300 tokens in blocks of 128
        decode = await client.post(
            demo.url("decode-0") + "/v1/completions",
            json={"prompt": " ".join(["one two three"] * 100), "max_tokens": 8, "kv_transfer_params": params},
        )
        assert decode.json()["usage"]["completion_tokens"] == 8
        text = (await client.get(demo.url("decode-0") + "/metrics")).text
    assert (
        'vllm:prompt_tokens_by_source_total{engine="0",model_name="deepseek_v3",source="external_kv_transfer"} 300.0'
        in text
    )
    assert 'vllm:generation_tokens_total{engine="0",model_name="deepseek_v3"} 8.0' in text
    assert 'vllm:spec_decode_num_drafts_total{engine="0",model_name="deepseek_v3"}' in text


async def test_metric_names_are_vllms(demo: Cluster) -> None:
    real = set()
    for name in ("metrics-after-bench.txt", "metrics-prefill-pd.txt"):
        for line in (FIXTURES / "vllm" / name).read_text().splitlines():
            if line.startswith("# TYPE vllm:"):
                real.add(line.split()[2])
    await demo.start("decode-0")
    await demo.wait_http("decode-0")
    text = httpx.get(demo.url("decode-0") + "/metrics", trust_env=False).text
    ours = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE vllm:")}
    spec = {n for n in ours if n.startswith("vllm:spec_decode")}  # MTP only: absent from the CPU captures
    assert spec and ours - spec <= real, sorted(ours - spec - real)


# ---------------------------------------------------------------- faults


async def test_startup_oom_fails_with_the_real_message(tmp_path: Path) -> None:
    c = cluster(tmp_path, extra_env={"CPCONSOLE_SIM_FAULT": "npu_oom@start-up"})
    await c.start("decode-0")
    assert await c.wait_exit("decode-0") == 1
    log = c.log("decode-0")
    assert real_line("npu_oom") in log
    assert "EngineCore failed to start." in log


def test_kv_cache_too_small_is_a_real_startup_failure() -> None:
    args = ["serve", "/m", "-tp", "16", "--gpu-memory-utilization", "0.7", "--max-model-len", "1000"]
    done = subprocess.run(
        [sys.executable, "-m", "cpconsole.sim", "vllm", *args],
        capture_output=True,
        text=True,
        timeout=20,
        env={"CPCONSOLE_SIM_STARTUP_S": "0", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert "ValueError: No available memory for the cache blocks" in done.stdout


async def test_crash_after_n_requests(tmp_path: Path) -> None:
    c = cluster(tmp_path, extra_env={"CPCONSOLE_SIM_CRASH_AFTER": "2"})
    await c.start("decode-0")
    await c.wait_http("decode-0")
    async with httpx.AsyncClient(base_url=c.url("decode-0"), trust_env=False, timeout=10) as client:
        for _ in range(2):
            assert (await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})).status_code == 200
    assert await c.wait_exit("decode-0") == 0  # as vLLM's API server does after its engine died
    log = c.log("decode-0")
    assert "EngineCore encountered a fatal error." in log
    assert "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue." in log


async def test_alive_but_dead_engine_answers_503(tmp_path: Path) -> None:
    c = cluster(tmp_path, extra_env={"CPCONSOLE_SIM_HEALTH_503": "1"})
    try:
        await c.start("decode-0")
        await c.wait_http("decode-0", "/version")
        assert httpx.get(c.url("decode-0") + "/health", trust_env=False).status_code == 503
        assert (await c.node.status(c.handles["decode-0"])).state == "running"
    finally:
        await c.stop_all()


async def test_hang_accepts_and_never_answers(tmp_path: Path) -> None:
    c = cluster(tmp_path, extra_env={"CPCONSOLE_SIM_HANG": "1"})
    try:
        await c.start("decode-0")
        await c.wait_listening(c.plan.process("decode-0").address, 8004)  # it accepts …
        with pytest.raises(httpx.ReadTimeout):  # … and never answers
            httpx.get(c.url("decode-0") + "/health", trust_env=False, timeout=0.5)
    finally:
        await c.stop_all()


async def test_slow_and_garbage_metrics(tmp_path: Path) -> None:
    c = cluster(tmp_path, extra_env={"CPCONSOLE_SIM_METRICS_DELAY_S": "1.5", "CPCONSOLE_SIM_METRICS_GARBAGE": "1"})
    try:
        await c.start("decode-0")
        await c.wait_http("decode-0")
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(c.url("decode-0") + "/metrics", trust_env=False, timeout=0.5)
        garbage = httpx.get(c.url("decode-0") + "/metrics", trust_env=False, timeout=5)
        assert garbage.status_code == 200 and b"\x00\xff" in garbage.content
    finally:
        await c.stop_all()


async def test_port_in_use_fails_like_vllm(demo: Cluster, tmp_path: Path) -> None:
    await demo.start("decode-0")
    await demo.wait_http("decode-0")
    second = Cluster(demo.plan)
    spec_dir = tmp_path / "second"
    spec_dir.mkdir()
    from cpconsole.core.remote.launch import spawn_spec

    spec = spawn_spec(demo.plan, demo.plan.process("decode-0"))
    second.handles["decode-0"] = await second.node.spawn_detached(dataclasses.replace(spec, run_dir=str(spec_dir)))
    assert await second.wait_exit("decode-0") == 1
    assert "OSError: [Errno 98] Address already in use" in (spec_dir / "log").read_text()


def test_without_the_libraries_it_loads_vllm_refuses_to_start_and_the_cause_is_named(tmp_path: Path) -> None:
    # the simulated node needs CANN's libhccl.so on LD_LIBRARY_PATH, as a real torch_npu does
    env = {"PATH": "/usr/bin:/bin", "CPCONSOLE_SIM_NEED_LIBS": "libhccl.so", "CPCONSOLE_SIM_STARTUP_S": "0"}
    done = sim("/m", "--port", "1", env=env)
    last = done.stderr.splitlines()[-1]
    assert done.returncode == 1 and last.startswith("ImportError: libhccl.so: cannot open shared object file")
    found = classify(done.stderr.splitlines())
    assert found is not None and found.kind == "library_missing" and "setup lines" in found.hint
    (tmp_path / "libhccl.so").write_bytes(b"")  # where the toolkit's set_env.sh would point
    ready = sim("/m", "--port", "1", "--help", env={**env, "LD_LIBRARY_PATH": str(tmp_path)})
    assert ready.returncode == 0, ready.stderr
