"""The smoke client's measurements against a loopback server with known timing, its failures,
the needle prompt, and `cpconsole smoke` against the simulated topology."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile
from cpconsole.core.smoke.client import RequestResult, percentile, stream_request
from cpconsole.core.smoke.prompts import needle_prompt

from .loopback import Block
from .simcluster import demo_text, processes_under
from .sshd import free_port

HOST = Block.fresh().ip(41)


def chunk(text: str, finish: str | None = None) -> bytes:
    body = {
        "id": "cmpl-1",
        "object": "text_completion",
        "choices": [{"index": 0, "text": text, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


async def scripted(request: Request) -> Response:
    mode = (await request.json())["prompt"]
    if mode == "http-error":
        return JSONResponse({"error": {"message": "The model `x` does not exist."}}, status_code=404)

    async def events() -> AsyncIterator[bytes]:
        if mode == "timed":
            for delay, text in ((0.2, ""), (0.1, "a"), (0.1, "bc"), (0.1, "d")):
                await asyncio.sleep(delay)
                yield chunk(text)
            yield b'data: {"id":"cmpl-1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}}\n\n'
            yield b"data: [DONE]\n\n"
        elif mode == "bad-json":
            yield chunk("a") + b"data: {not json\n\n"
        elif mode == "ragged":  # CRLF framing cut anywhere: inside a \r\n, a UTF-8 character, a "data:"
            stream = (
                chunk("né").replace(b"\n", b"\r\n") + b": ping\r\n\r\n" + chunk("e", "length") + b"data: [DONE]\r\n\r\n"
            )
            for start in range(0, len(stream), 3):
                yield stream[start : start + 3]
                await asyncio.sleep(0)
        elif mode == "port":  # which connection asked: the client's port
            yield chunk(str(request.client.port if request.client else ""), "stop")
            yield b"data: [DONE]\n\n"
        elif mode == "slow":
            await asyncio.sleep(5)
            yield chunk("late")

    return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port(HOST)
    app = Starlette(routes=[Route("/v1/completions", scripted, methods=["POST"])])
    srv = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.01)
    yield f"http://{HOST}:{port}"
    srv.should_exit = True
    thread.join(5)


async def request(base: str, prompt: str, timeout: float = 10) -> RequestResult:
    async with httpx.AsyncClient(trust_env=False) as http:
        return await stream_request(http, base, model="m", prompt=prompt, max_tokens=4, timeout=timeout)


async def test_ttft_itl_tpot_like_vllm_bench(server: str) -> None:
    result = await request(server, "timed")
    assert result.ok and result.text == "abcd" and result.output_tokens == 4 and result.prompt_tokens == 5
    # the first chunk with choices counts, even empty: three gaps between four chunks. Only lower
    # bounds on times (the server's sleeps): a busy machine makes every figure longer, never shorter.
    assert len(result.itl_s) == 3 and all(gap >= 0.09 for gap in result.itl_s)
    assert result.ttft_s is not None and result.e2e_s is not None and 0.2 <= result.ttft_s < result.e2e_s
    assert result.e2e_s >= 0.5 and result.tpot_s == pytest.approx((result.e2e_s - result.ttft_s) / 3)
    assert result.request_id.startswith("cpconsole-")


async def test_sse_framing_cut_at_any_byte(server: str) -> None:
    result = await request(server, "ragged")
    assert result.ok and result.text == "née" and result.finish_reason == "length"
    assert len(result.itl_s) == 1  # two messages with choices; the comment is not one


async def test_requests_reuse_one_connection(server: str) -> None:
    # each new connection costs the server and the client; reading the body to its end returns it to the pool
    async with httpx.AsyncClient(trust_env=False) as http:
        ports = [(await stream_request(http, server, model="m", prompt="port", max_tokens=1)).text for _ in range(3)]
    assert ports[0] and ports == [ports[0]] * 3


async def test_failures_are_results(server: str) -> None:
    missing = await request(server, "http-error")
    assert missing.error == "HTTP 404: The model `x` does not exist." and missing.status == 404
    bad = await request(server, "bad-json")
    assert bad.error is not None and bad.error.startswith("bad JSON in the stream")
    slow = await request(server, "slow", timeout=0.5)
    assert slow.error == "timed out after 0.5 s"
    with socket.socket() as closed:
        closed.bind((HOST, 0))
        port = closed.getsockname()[1]
    refused = await request(f"http://{HOST}:{port}", "timed")
    assert refused.error is not None and refused.error.startswith("connection failed")


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.99) == pytest.approx(3.97)
    assert percentile([], 0.5) is None


@pytest.mark.parametrize("depth", [0.1, 0.5, 0.9])
def test_needle_sits_at_its_depth(depth: float) -> None:
    needle = needle_prompt(20_000, depth, seed=3)
    at = needle.prompt.index("The passphrase is")
    assert abs(at / len(needle.prompt) - depth) < 0.02
    assert needle.prompt.count("passphrase is") == 1 and needle.prompt.endswith("Answer with the passphrase only.")
    assert needle.passed(f"It is {needle.passphrase.upper()}.") and not needle.passed("I do not know")


def test_cpconsole_smoke_against_the_demo(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))

    def cpconsole(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cpconsole", *args], capture_output=True, text=True, timeout=120)

    try:
        assert cpconsole("up", str(profile)).returncode == 0
        done = cpconsole("smoke", str(profile), "--json", "--depths", "0.1,0.9")
        report = json.loads(done.stdout)
        assert done.returncode == 0 and report["passed"], done.stdout
        names = [c["name"] for c in report["checks"]]
        assert names == [
            "health prefill-0",
            "health decode-0",
            "health proxy",
            "probe prefill-0",
            "probe decode-0",
            "probe proxy",
            "completion proxy",
            "needle 10% via proxy",
            "needle 90% via proxy",
        ]
        needle = report["checks"][-1]
        assert needle["passphrase"] in needle["answer"] and needle["prompt_tokens_measured"]
        assert 125_000 < needle["prompt_tokens"] < 136_000 and needle["ttft_s"] > 0.5  # 128k-class prefill takes time
        too_long = cpconsole("smoke", str(profile), "--needle", "140000")  # refused before any request
        assert too_long.returncode == 2 and "exceed max_model_len 136000" in too_long.stderr
        hello = cpconsole("smoke", str(profile), "--target", "decode-0", "--needle", "0")
        assert hello.returncode == 0 and "PASS  completion decode-0" in hello.stdout and "needle" not in hello.stdout
        # the decode engine killed: the probe path names the broken hop, and smoke fails
        decode = json.loads(cpconsole("status", str(profile), "--json").stdout)["processes"][2]
        assert decode["name"] == "decode-0"
        for child in processes_under(decode["pid"], "cpconsole.sim"):
            child.kill()
        proxy = build_plan(load_profile(profile)).process("proxy").base_url + "/healthcheck"
        for _ in range(600):  # until the proxy has noticed (it asks its backends at most once a second)
            if httpx.get(proxy, trust_env=False, timeout=5).status_code == 503:
                break
            time.sleep(0.05)
        broken = cpconsole("smoke", str(profile), "--json", "--needle", "0")
        failed = [c["name"] for c in json.loads(broken.stdout)["checks"] if not c["passed"]]
        assert broken.returncode == 1 and failed == [
            "health decode-0",
            "health proxy",  # degraded: no live decode behind it
            "probe decode-0",
            "probe proxy",
            "completion proxy",
        ]
    finally:
        cpconsole("down", str(profile))


def test_history_survives_damage_and_exports_markdown(tmp_path: Path) -> None:
    from cpconsole.core.smoke.client import RequestResult
    from cpconsole.core.smoke.history import History, PromptRecord, to_markdown

    history = History(tmp_path / "prompts.jsonl")
    ok = RequestResult(None, 200, 0.12, (0.01, 0.03), 0.2, 5, 3, "hi there", "stop", "cpconsole-1")
    history.append(PromptRecord.of("2026-11-28T01:00:00", "demo", "proxy", "hello", 16, 0.0, ok))
    with history.path.open("a") as f:
        f.write("{not json\n")
    failed = RequestResult("HTTP 400: too long", 400, request_id="cpconsole-2")
    history.append(PromptRecord.of("2026-11-28T01:00:05", "other", "decode-0", "x" * 10, 16, 0.5, failed))
    assert [r.request_id for r in history.load()] == ["cpconsole-1", "cpconsole-2"]
    (mine,) = history.load("demo")
    assert mine.stats() == "TTFT 120 ms  TPOT 40 ms  ITL p50 20 ms p99 30 ms  5 → 3 tokens  15.0 tok/s  E2E 200 ms"
    markdown = to_markdown(history.load())
    assert "## 2026-11-28T01:00:00 — proxy (demo)" in markdown and "hi there" in markdown
    assert "(error) HTTP 400: too long" in markdown
    assert History(tmp_path / "missing.jsonl").load() == []
