"""What a PD proxy adds to a request, at many concurrent streams: cpconsole's, and the vLLM project's
Rust router (vllm-router, from the lock) beside it in the same run.

    .venv/bin/python -m benchmarks.proxy_overhead [--streams 200] [--tokens 32] [--step-ms 40] [--rounds 5]
                                                  [--peer PATH/load_balance_proxy_server_example.py]

A stand-in prefill and a stand-in decode (one process, their own event loop) answer with fixed
timing: the prefill after 50 ms with its kv_transfer_params, the decode streams `--tokens` tokens
`--step-ms` apart (a decode step). Each round, `--streams` requests at once, each way in turn (the
order rotating from round to round), the client's work the same every way (one streamed request each):
  direct       straight to the decode stand-in, which then waits the prefill's 50 ms itself before it
               streams: the same timing without a proxy in the path
  cpconsole    through cpconsole's proxy (its own process, metrics on)
  vllm-router  through vllm-router 0.1.17 (--vllm-pd-disaggregation --kv-connector nixl)
  example      with --peer: through vllm-ascend's example proxy, the file given (from a vllm-ascend
               checkout; it needs fastapi, which the lock has for vllm-router)
Each request's TTFT and E2E as the client measured them (core/smoke/client.py); per round the
median of each way, then the medians of the rounds and each proxy's overhead over direct; and
each proxy's CPU per request from the OS's accounting (psutil: user + system time of its process
tree over its rounds, divided by the requests it relayed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cpconsole.core.httpclient import ClientShards
from cpconsole.core.smoke.client import stream_request

HOST = "127.0.0.77"
ROUTER = Path(sys.executable).with_name("vllm-router")  # vllm-router from the lock (the test extra)
PREFILL_S = 0.05


def stand_in(tokens: int, step_s: float) -> Starlette:
    async def completions(request: Request) -> Response:
        body = await request.json()
        if body.get("kv_transfer_params", {}).get("do_remote_decode"):  # the prefill step
            await asyncio.sleep(PREFILL_S)
            params = {"do_remote_prefill": True, "remote_engine_id": "0", "remote_block_ids": [1]}
            return JSONResponse(
                {"choices": [{"text": "a"}], "kv_transfer_params": params, "usage": {"prompt_tokens": 64}}
            )

        async def events() -> AsyncIterator[bytes]:
            if "kv_transfer_params" not in body:  # direct: no prefill happened elsewhere
                await asyncio.sleep(PREFILL_S)
            for n in range(tokens):
                await asyncio.sleep(step_s)
                yield f"data: {json.dumps({'choices': [{'index': 0, 'text': f' t{n}'}]})}\n\n".encode()
            usage = {"prompt_tokens": 64, "completion_tokens": tokens, "total_tokens": 64 + tokens}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def health(_: Request) -> Response:  # vLLM's: the router checks every worker before it serves
        return Response(status_code=200)

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"]), Route("/health", health)])


def serve_stand_ins(tokens: int, step_s: float, prefill_port: int, decode_port: int) -> None:
    async def main() -> None:
        servers = [
            uvicorn.Server(
                uvicorn.Config(stand_in(tokens, step_s), host=HOST, port=port, log_level="error", backlog=4096)
            )
            for port in (prefill_port, decode_port)
        ]
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(main())


async def wait_up(url: str) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        for _ in range(300):
            try:
                await client.get(url, timeout=1)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
    raise SystemExit(f"nothing answered at {url}")


PROMPT = "hello " * 64


async def one(http: httpx.AsyncClient, base: str) -> tuple[float, float]:
    result = await stream_request(http, base, model="m", prompt=PROMPT, max_tokens=32)
    if not result.ok or result.ttft_s is None or result.e2e_s is None:
        raise SystemExit(f"a request to {base} failed: {result.error}")
    return result.ttft_s, result.e2e_s


async def round_of(streams: int, work: object) -> tuple[float, float]:
    pairs = await asyncio.gather(*(work() for _ in range(streams)))  # type: ignore[operator]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def cpu_s(process: subprocess.Popen[bytes]) -> float:
    """User + system seconds of a process and its children so far."""
    root = psutil.Process(process.pid)
    total = 0.0
    for each in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = each.cpu_times()
            total += times.user + times.system
    return total


async def main(streams: int, tokens: int, step_s: float, rounds: int, peer: Path | None) -> None:
    prefill_port, decode_port, ours_port, router_port = free_port(), free_port(), free_port(), free_port()
    peer_port = free_port()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    code = f"from benchmarks.proxy_overhead import serve_stand_ins; serve_stand_ins({tokens}, {step_s}, {prefill_port}, {decode_port})"
    stand_ins = subprocess.Popen([sys.executable, "-c", code], env=env)
    base = f"http://{HOST}"
    proxies = {
        "cpconsole": subprocess.Popen(
            [
                *(sys.executable, "-m", "cpconsole.proxy", "--host", HOST, "--port", str(ours_port)),
                *("--prefiller-hosts", HOST, "--prefiller-ports", str(prefill_port)),
                *("--decoder-hosts", HOST, "--decoder-ports", str(decode_port), "--log-level", "WARNING"),
            ],
            env=env,
        ),
        "vllm-router": subprocess.Popen(
            [
                *(str(ROUTER), "--host", HOST, "--port", str(router_port), "--vllm-pd-disaggregation"),
                *("--prefill", f"{base}:{prefill_port}", "none", "--decode", f"{base}:{decode_port}"),
                *("--kv-connector", "nixl", "--prometheus-host", HOST, "--prometheus-port", str(free_port())),
                *("--log-level", "warning"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        ),
    }
    ports = {"direct": decode_port, "cpconsole": ours_port, "vllm-router": router_port}
    if peer is not None:
        proxies["example"] = subprocess.Popen(
            [
                *(sys.executable, str(peer), "--host", HOST, "--port", str(peer_port)),
                *("--prefiller-hosts", HOST, "--prefiller-ports", str(prefill_port)),
                *("--decoder-hosts", HOST, "--decoder-ports", str(decode_port)),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ports["example"] = peer_port
    try:
        for port in (prefill_port, decode_port, ours_port):
            await wait_up(f"{base}:{port}/")
        await wait_up(f"{base}:{router_port}/health")
        if peer is not None:
            await wait_up(f"{base}:{peer_port}/healthcheck")
        measured: dict[str, list[tuple[float, float]]] = {way: [] for way in ports}
        cpu: dict[str, float] = dict.fromkeys(proxies, 0.0)
        clients = ClientShards(16, 600.0)  # the load generator must not be the bottleneck either
        try:
            ways = {way: (lambda port=port: one(clients.pick(), f"{base}:{port}")) for way, port in ports.items()}
            for way in ways:  # warm-up: connections, imports, first requests
                await round_of(streams, ways[way])
            order = list(ways)
            for n in range(rounds):
                for way in order[n % len(order) :] + order[: n % len(order)]:
                    before = cpu_s(proxies[way]) if way in proxies else 0.0
                    measured[way].append(await round_of(streams, ways[way]))
                    if way in proxies:
                        cpu[way] += cpu_s(proxies[way]) - before
        finally:
            await clients.aclose()
    finally:
        for process in (*proxies.values(), stand_ins):
            process.terminate()
            process.wait(10)
    ttft = {way: statistics.median(r[0] for r in rs) for way, rs in measured.items()}
    e2e = {way: statistics.median(r[1] for r in rs) for way, rs in measured.items()}
    print(f"{streams} concurrent streams of {tokens} tokens {step_s * 1000:g} ms apart, {rounds} rounds (medians)")
    print(f"{'':12} {'TTFT':>9} {'E2E':>9} {'CPU/request':>12}")
    for way in ports:
        per = f"{cpu[way] / (streams * rounds) * 1000:9.2f}ms" if way in cpu else ""
        print(f"{way:12} {ttft[way] * 1000:7.1f}ms {e2e[way] * 1000:7.1f}ms {per:>12}")
    for way in proxies:
        for label, values in (("TTFT", ttft), ("E2E", e2e)):
            extra = values[way] - values["direct"]
            print(f"{way} adds {extra * 1000:.1f} ms to the {label}: {extra / values['direct']:+.1%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--step-ms", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peer", type=Path, help="vllm-ascend's load_balance_proxy_server_example.py, measured too")
    args = parser.parse_args()
    asyncio.run(main(args.streams, args.tokens, args.step_ms / 1000, args.rounds, args.peer))
