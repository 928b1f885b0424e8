"""A stand-in of vllm-ascend's example PD proxy (examples/disaggregated_prefill_v1/
load_balance_proxy_server_example.py at v0.15.0rc1, the guide's image), as far as cpconsole meets
it: its command line, /healthcheck (counts only), the PD relay (the prefill asked for one token and
`do_remote_decode`, the decode given what the prefill returned) and its unauthenticated instance
API with the example's rules — an add is taken only once the instance answers (else it waits for
it), a remove while any request is in flight only taints the instance (no new request goes to it;
it stays listed) until the proxy holds no request at all, every answer lists the current instances.
Run: python example_proxy_standin.py --host H --port P --prefiller-hosts … --prefiller-ports …
--decoder-hosts … --decoder-ports …"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ROLES = ("prefill", "decode")


class State:
    def __init__(self, prefill: list[str], decode: list[str]) -> None:
        self.servers: dict[str, list[str]] = {"prefill": prefill, "decode": decode}
        self.tainted: dict[str, set[str]] = {"prefill": set(), "decode": set()}
        self.waiting: dict[str, str] = {}  # instance → role: added once it answers
        self.request_num = 0
        self.turn = itertools.count()
        self.http = httpx.AsyncClient(timeout=600, trust_env=False)

    def pick(self, role: str) -> str:
        usable = [s for s in self.servers[role] if s not in self.tainted[role]]
        return usable[next(self.turn) % len(usable)]

    def listed(self) -> dict[str, list[str]]:
        return {f"current_{r}_instances": list(self.servers[r]) for r in ROLES}

    async def answers(self, instance: str) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return (await self.http.get(f"http://{instance}/health", timeout=5)).status_code == 200
        return False

    async def listener(self) -> None:
        """The example's node listener: waiting instances added once they answer; tainted ones
        removed once the proxy holds no request."""
        while True:
            for instance, role in list(self.waiting.items()):
                if await self.answers(instance):
                    self.waiting.pop(instance, None)
                    if instance not in self.servers[role]:
                        self.servers[role].append(instance)
            if not self.request_num:
                for role in ROLES:
                    self.servers[role] = [s for s in self.servers[role] if s not in self.tainted[role]]
                    self.tainted[role].clear()
            await asyncio.sleep(0.5)


def app(state: State) -> Starlette:
    async def healthcheck(_: Request) -> Response:
        return JSONResponse({"status": "ok", **{f"{r}_instances": len(state.servers[r]) for r in ROLES}})

    async def adjust(request: Request) -> Response:
        body = await request.json()
        role, given = body.get("type", ""), body.get("instances", [])
        given = [given] if isinstance(given, str) else list(given)
        if role not in ROLES:
            return JSONResponse({"error": f"Instance type {role} is not supported."})
        if request.url.path.endswith("/add"):
            for instance in given:
                if instance in state.tainted[role]:
                    state.tainted[role].discard(instance)
                elif await state.answers(instance):
                    if instance not in state.servers[role]:
                        state.servers[role].append(instance)
                else:
                    state.waiting[instance] = role
        elif given and state.request_num > 0:
            state.tainted[role] |= {s for s in given if s in state.servers[role]}
        else:
            state.servers[role] = [s for s in state.servers[role] if s not in given]
        return JSONResponse({"message": f"{request.url.path} {role} {given}", **state.listed()})

    async def relay(request: Request) -> Response:
        api = request.url.path
        body: dict[str, Any] = await request.json()
        state.request_num += 1
        try:
            prefill = {**body, "max_tokens": 1, "stream": False, "kv_transfer_params": {"do_remote_decode": True}}
            prefill.pop("stream_options", None)
            first = await state.http.post(f"http://{state.pick('prefill')}{api}", json=prefill)
            decode = {**body, "kv_transfer_params": first.json().get("kv_transfer_params")}
            target = f"http://{state.pick('decode')}{api}"
        except BaseException:
            state.request_num -= 1
            raise

        async def stream() -> AsyncIterator[bytes]:
            try:
                async with state.http.stream("POST", target, json=decode) as answer:
                    async for chunk in answer.aiter_raw():
                        yield chunk
            finally:
                state.request_num -= 1

        return StreamingResponse(stream(), media_type="text/event-stream" if body.get("stream") else "application/json")

    return Starlette(
        routes=[
            Route("/healthcheck", healthcheck),
            Route("/instances/add", adjust, methods=["POST"]),
            Route("/instances/remove", adjust, methods=["POST"]),
            Route("/v1/completions", relay, methods=["POST"]),
            Route("/v1/chat/completions", relay, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="localhost")
    for flag in ("--prefiller-hosts", "--decoder-hosts"):
        parser.add_argument(flag, nargs="+", default=["localhost"])
    for flag in ("--prefiller-ports", "--decoder-ports"):
        parser.add_argument(flag, type=int, nargs="+", default=[8001])
    args = parser.parse_args()
    state = State(
        [f"{h}:{p}" for h, p in zip(args.prefiller_hosts, args.prefiller_ports, strict=True)],
        [f"{h}:{p}" for h, p in zip(args.decoder_hosts, args.decoder_ports, strict=True)],
    )

    async def serve() -> None:
        listener = asyncio.create_task(state.listener())
        try:
            await uvicorn.Server(
                uvicorn.Config(app(state), host=args.host, port=args.port, log_level="warning")
            ).serve()
        finally:
            listener.cancel()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
