"""A PD proxy, CLI- and API-compatible with vllm-ascend's load_balance_proxy_server_example.py:
prefill with max_tokens=1 and `kv_transfer_params.do_remote_decode`, then decode with the params
the prefiller returned, relayed back byte for byte. Works in front of real vLLM servers too.

What it accepts, unlike the example: request bodies are JSON objects of a bounded size (400, 413);
its health says whether every role has a live backend; a prefill that answers without
kv_transfer_params is a 502, not a silent re-prefill on the decode; `/instances/add|remove` are off unless
enabled, then open to loopback clients or to the admin token only, and the API key is forwarded
only to the backends it was started with."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..core.httpclient import ClientShards
from ..core.telemetry.health import PROBE_PREFIX
from .metrics import ProxyMetrics, Timing

log = logging.getLogger("cpconsole.proxy")
Kind = Literal["prefill", "decode"]


@dataclass
class Backend:
    host: str
    port: int
    active: int = 0
    order: int = 0
    trusted: bool = True  # started with: gets the API key; added at run time: never does

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


SHARDS = 16  # connection pools to the backends (core.httpclient.ClientShards)
MAX_BODY_BYTES = 8 << 20  # a 128k-token prompt as JSON text, with room to spare
HEALTH_TTL_S = 1.0  # backends' health is asked at most this often, however often we are asked


@dataclass
class ProxySettings:
    max_retries: int = 3
    retry_delay: float = 0.001
    max_body_bytes: int = MAX_BODY_BYTES
    instance_api: bool = False  # /instances/add|remove
    admin_token: str = ""  # with instance_api: required of clients not on loopback
    # a prefill answer without kv_transfer_params: refused (502), since the decode would prefill the
    # whole prompt again — minutes at 128k, and no error; off for connectors that hand the KV over
    # another way (ExampleConnector's shared storage)
    kv_params_required: bool = True
    # with it: clients' requests must carry `Authorization: Bearer <client_key>` (401 otherwise,
    # vLLM's answer) — a proxy that sends the servers' key on must not let anyone use it
    client_key: str = ""


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, read no further than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"request body of {declared} bytes is over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(400, f"request body must be a JSON object, not {type(body).__name__}")
    return body


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Pool:
    backends: list[Backend] = field(default_factory=list)
    _added: int = 0

    def add(self, host: str, port: int, *, trusted: bool = True) -> None:
        if not any(b.host == host and b.port == port for b in self.backends):
            self._added += 1
            self.backends.append(Backend(host, port, order=self._added, trusted=trusted))

    def remove(self, host: str, port: int) -> None:
        self.backends = [b for b in self.backends if not (b.host == host and b.port == port)]

    def pick(self) -> Backend | None:
        """Least busy first; ties go to the one added first."""
        return min(self.backends, key=lambda b: (b.active, b.order), default=None)


class PdProxy:
    def __init__(self, prefill: list[tuple[str, int]], decode: list[tuple[str, int]], settings: ProxySettings) -> None:
        self.pools: dict[Kind, Pool] = {"prefill": Pool(), "decode": Pool()}
        for host, port in prefill:
            self.pools["prefill"].add(host, port)
        for host, port in decode:
            self.pools["decode"].add(host, port)
        self.settings = settings
        self.metrics = ProxyMetrics()
        self._health: tuple[float, dict[Kind, int]] | None = None
        self.clients = ClientShards(SHARDS, None)
        self.app = Starlette(
            routes=[
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/healthcheck", self.healthcheck),
                Route("/metrics", self.metrics_page),
                Route("/v1/models", self.models),
                Route("/instances/add", self.add_instances, methods=["POST"]),
                Route("/instances/remove", self.remove_instances, methods=["POST"]),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await self.clients.aclose()

    def _headers(self, request_id: str, backend: Backend) -> dict[str, str]:
        headers = {"X-Request-Id": request_id}
        if os.environ.get("OPENAI_API_KEY") and backend.trusted:
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        return headers

    async def _retrying(self, backend: Backend, send: Any) -> Any:
        """Retry connection failures with exponential backoff; HTTP answers are not retried."""
        delay = self.settings.retry_delay
        for attempt in range(self.settings.max_retries + 1):
            try:
                return await send()
            except httpx.TransportError as exc:
                if attempt == self.settings.max_retries:
                    raise
                log.warning("attempt %d to %s failed: %s; retrying in %.3fs", attempt + 1, backend.name, exc, delay)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def completions(self, request: Request) -> Response:
        return await self._forward(request, "/v1/completions")

    async def chat(self, request: Request) -> Response:
        return await self._forward(request, "/v1/chat/completions")

    async def _forward(self, request: Request, api: str) -> Response:
        if self.settings.client_key:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {self.settings.client_key}".encode()):
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
        try:
            body = await read_json_object(request, self.settings.max_body_bytes)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        prefiller, decoder = self.pools["prefill"].pick(), self.pools["decode"].pick()
        if prefiller is None or decoder is None:
            return JSONResponse({"error": "no prefill or decode instance available"}, status_code=503)
        timing = Timing(prefiller.name, decoder.name, probe=request_id.startswith(PROBE_PREFIX))
        prefill_body = {**body, "stream": False, "max_tokens": 1, "min_tokens": 1}
        prefill_body.pop("stream_options", None)
        if "max_completion_tokens" in body:
            prefill_body["max_completion_tokens"] = 1
        prefill_body["kv_transfer_params"] = {
            "do_remote_decode": True,
            "do_remote_prefill": False,
            "remote_engine_id": None,
            "remote_block_ids": None,
            "remote_host": None,
            "remote_port": None,
        }
        prefiller.active += 1
        try:
            client = self.clients.pick()
            answer = await self._retrying(
                prefiller,
                lambda: client.post(
                    prefiller.base + api, json=prefill_body, headers=self._headers(request_id, prefiller)
                ),
            )
        except httpx.TransportError as exc:
            log.error(
                "Error occurred in disagg prefill proxy server - %s endpoint: prefiller %s: %s",
                api,
                prefiller.name,
                exc,
            )
            timing.finish(self.metrics, "prefill_unreachable")
            return JSONResponse({"error": f"prefiller {prefiller.name} unreachable: {exc}"}, status_code=502)
        finally:
            prefiller.active -= 1
        timing.prefilled = time.monotonic()
        if answer.status_code != 200:
            timing.finish(self.metrics, "error")
            return Response(answer.content, status_code=answer.status_code, media_type="application/json")
        try:
            prefilled = answer.json()
        except ValueError:
            prefilled = None
        if not isinstance(prefilled, dict):
            timing.finish(self.metrics, "error")
            return JSONResponse({"error": f"prefiller {prefiller.name} answered no JSON object"}, status_code=502)
        usage = prefilled.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            timing.prompt_tokens = usage["prompt_tokens"]
        kv = prefilled.get("kv_transfer_params")
        if not kv and self.settings.kv_params_required:
            why = (
                f"prefiller {prefiller.name} answered without kv_transfer_params: the decode would prefill the "
                "whole prompt again; check the prefill's kv_transfer_config (kv_role kv_producer) and its log"
            )
            log.error("%s (request %s)", why, request_id)
            timing.finish(self.metrics, "no_kv_params")
            return JSONResponse({"error": why}, status_code=502)
        decode_body = {**body, "kv_transfer_params": kv} if kv else body
        decoder.active += 1
        client = self.clients.pick()
        try:
            upstream = await self._retrying(
                decoder,
                lambda: client.send(
                    client.build_request(
                        "POST", decoder.base + api, json=decode_body, headers=self._headers(request_id, decoder)
                    ),
                    stream=True,
                ),
            )
        except httpx.TransportError as exc:
            decoder.active -= 1
            log.error(
                "Error occurred in disagg prefill proxy server - %s endpoint: decoder %s: %s", api, decoder.name, exc
            )
            timing.finish(self.metrics, "decode_unreachable")
            return JSONResponse({"error": f"decoder {decoder.name} unreachable: {exc}"}, status_code=502)
        media = "text/event-stream; charset=utf-8" if body.get("stream") else "application/json"
        relay = self._relay(upstream, decoder, timing)
        # the client splits its own TTFT with this: prefill, then hand-off + first decode step
        prefill_ms = (timing.prefilled - timing.arrived) * 1000
        headers = {"Server-Timing": f'prefill;dur={prefill_ms:.1f};desc="{prefiller.name}"'}
        return StreamingResponse(relay, status_code=upstream.status_code, media_type=media, headers=headers)

    async def _relay(self, upstream: httpx.Response, decoder: Backend, timing: Timing) -> AsyncIterator[bytes]:
        outcome = "error"
        try:
            async for chunk in upstream.aiter_raw():
                timing.relayed(chunk)
                yield chunk
            outcome = "ok" if upstream.status_code == 200 else "error"
        finally:
            decoder.active -= 1
            timing.finish(self.metrics, outcome)
            await upstream.aclose()

    async def metrics_page(self, request: Request) -> Response:
        """Prometheus text: every request's timings and outcome (metrics.py)."""
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthcheck(self, request: Request) -> Response:
        """ok (200) while every role has a live backend, else degraded (503)."""
        live = await self._live_backends()
        healthy = all(live.values())
        return JSONResponse(
            {
                "status": "ok" if healthy else "degraded",
                "prefill_instances": len(self.pools["prefill"].backends),
                "decode_instances": len(self.pools["decode"].backends),
                "live_prefill_instances": live["prefill"],
                "live_decode_instances": live["decode"],
            },
            status_code=200 if healthy else 503,
        )

    async def _live_backends(self) -> dict[Kind, int]:
        """How many backends of each role answer /health, asked at most once per HEALTH_TTL_S."""
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < HEALTH_TTL_S:
            return self._health[1]

        async def alive(backend: Backend) -> bool:
            try:
                answer = await self.clients.pick().get(backend.base + "/health", timeout=2)
            except httpx.HTTPError:
                return False
            return answer.status_code == 200

        live: dict[Kind, int] = {}
        for kind, pool in self.pools.items():
            live[kind] = sum(await asyncio.gather(*(alive(b) for b in pool.backends)))
        self._health = (now, live)
        return live

    async def models(self, request: Request) -> Response:
        for kind in ("decode", "prefill"):
            for backend in self.pools[kind].backends:
                with contextlib.suppress(httpx.HTTPError):
                    answer = await self.clients.pick().get(backend.base + "/v1/models", timeout=5)
                    if answer.status_code == 200:
                        return Response(answer.content, media_type="application/json")
        return JSONResponse({"error": "no backend answered /v1/models"}, status_code=503)

    def _refuse_control(self, request: Request) -> Response | None:
        """Why a client may not change the backends, or None when it may."""
        if not self.settings.instance_api:
            off = "the instance API is off (start the proxy with --enable-instance-api)"
            return JSONResponse({"error": off}, status_code=403)
        token = self.settings.admin_token
        if token:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "wrong or missing admin token"}, status_code=401)
        elif not is_loopback(request.client.host if request.client else None):
            return JSONResponse({"error": "the instance API answers loopback clients only"}, status_code=403)
        return None

    async def _instances(self, request: Request, add: bool) -> Response:
        refusal = self._refuse_control(request)
        if refusal is not None:
            return refusal
        try:
            body = await read_json_object(request, 64 << 10)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        kind = body.get("type")
        if kind not in self.pools:
            return JSONResponse({"error": "type must be 'prefill' or 'decode'"}, status_code=400)
        items = body.get("instances") or []
        if not isinstance(items, list):
            return JSONResponse({"error": "instances must be a list of host:port"}, status_code=400)
        changed = []
        for item in items:
            host, _, port = str(item).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                return JSONResponse({"error": f"bad instance '{item}', expected host:port"}, status_code=400)
            pool = self.pools[kind]
            if add:
                pool.add(host.strip("[]"), int(port), trusted=False)
            else:
                pool.remove(host.strip("[]"), int(port))
            changed.append(item)
        self._health = None
        verb = "added" if add else "removed"
        log.warning("%s %s %s instance(s) at run time: %s", request.client, verb, kind, ", ".join(map(str, changed)))
        return JSONResponse({"message": f"{verb} {len(changed)} {kind} instance(s)", "instances": changed})

    async def add_instances(self, request: Request) -> Response:
        return await self._instances(request, add=True)

    async def remove_instances(self, request: Request) -> Response:
        return await self._instances(request, add=False)
