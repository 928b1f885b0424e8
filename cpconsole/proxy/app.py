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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..core.httpclient import ClientShards, once_more_if_stale
from ..core.safetext import terminal_safe
from ..core.telemetry.health import PROBE_PREFIX
from .backends import Backend, Kind, Pool
from .metrics import ProxyMetrics, Timing

log = logging.getLogger("cpconsole.proxy")

SHARDS = 16  # connection pools to the backends (core.httpclient.ClientShards)
MAX_BODY_BYTES = 8 << 20  # a 128k-token prompt as JSON text, with room to spare
HEALTH_TTL_S = 1.0  # backends' health is asked at most this often, however often we are asked
PROBE_EVERY_S = 1.0  # a backend out of rotation is asked for /health this often
ANSWER_LIMIT = 16 << 20  # a prefill's answer (one token and the KV parameters) is never larger
ERROR_LIMIT = 64 << 10  # what is read of a backend's error answer


@dataclass
class ProxySettings:
    max_retries: int = 3  # other instances of a role tried for one request, before any byte reached its client
    retry_delay: float = 0.001  # accepted for the example proxy's CLI
    max_body_bytes: int = MAX_BODY_BYTES
    instance_api: bool = False  # /instances/add|remove|drain|resume
    admin_token: str = ""  # with instance_api: required of clients not on loopback
    # a prefill answer without kv_transfer_params: refused (502), since the decode would prefill the
    # whole prompt again — minutes at 128k, and no error; off for connectors that hand the KV over
    # another way (ExampleConnector's shared storage)
    kv_params_required: bool = True
    # with it: clients' requests must carry `Authorization: Bearer <client_key>` (401 otherwise,
    # vLLM's answer) — a proxy that sends the servers' key on must not let anyone use it
    client_key: str = ""
    connect_timeout: float = 10.0
    prefill_timeout: float = 900.0  # for the prefill's answer: a 128k prompt on a busy P takes minutes
    decode_timeout: float = 900.0  # for the decode's first byte after the hand-off, and between its chunks
    retry_budget_s: float = 60.0  # no new attempt for a request this long after it arrived
    limit_requests: int = 1024  # completions in flight; past it 503 (health and metrics are always served)


InstanceAction = Literal["add", "remove", "drain", "resume"]
WHO: dict[Kind, str] = {"prefill": "prefiller", "decode": "decoder"}  # as the example proxy names them


@dataclass(frozen=True)
class Prefilled:
    kv_transfer_params: Any
    prompt_tokens: int | None  # as the prefill counted them


@dataclass(frozen=True)
class Failure:
    """An attempt that did not give the client an answer: what to say, and whether another
    instance of the role may serve the request instead."""

    status: int
    message: str
    outcome: str
    retry: bool


class Held:
    """A decode's open answer and its place in the backend's count of requests in flight (which a
    drain waits on): let go once — at the end of its relay, or when the client left before the
    relay began."""

    def __init__(self, backend: Backend, upstream: httpx.Response) -> None:
        self.backend, self.upstream = backend, upstream
        self._released = False

    async def release(self) -> None:
        if not self._released:
            self._released = True
            self.backend.active -= 1
            await self.upstream.aclose()


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
        self._in_flight = 0
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
                Route("/instances/drain", self.drain_instances, methods=["POST"]),
                Route("/instances/resume", self.resume_instances, methods=["POST"]),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        prober = asyncio.create_task(self._probe_tripped())
        yield
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober
        await self.clients.aclose()

    async def _probe_tripped(self) -> None:
        """Backends out of rotation are asked for /health until they answer; then they are back."""
        while True:
            await asyncio.sleep(PROBE_EVERY_S)
            tripped = [b for pool in self.pools.values() for b in pool.backends if b.state == "open"]
            answers = await asyncio.gather(*(self._answers_health(b) for b in tripped))
            for backend, healthy in zip(tripped, answers, strict=True):
                if healthy:
                    backend.recovered()

    async def _answers_health(self, backend: Backend) -> bool:
        try:
            answer = await self.clients.pick().get(backend.base + "/health", timeout=2)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    def _headers(self, request_id: str, backend: Backend) -> dict[str, str]:
        headers = {"X-Request-Id": request_id}
        if os.environ.get("OPENAI_API_KEY") and backend.trusted:
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        return headers

    def _timeout(self, read: float) -> httpx.Timeout:
        return httpx.Timeout(self.settings.connect_timeout, read=read, write=60.0, pool=self.settings.connect_timeout)

    async def completions(self, request: Request) -> Response:
        return await self._forward(request, "/v1/completions")

    async def chat(self, request: Request) -> Response:
        return await self._forward(request, "/v1/chat/completions")

    async def _forward(self, request: Request, api: str) -> Response:
        if self.settings.client_key:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {self.settings.client_key}".encode()):
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
        if self._in_flight >= self.settings.limit_requests:
            return JSONResponse({"error": "the proxy is at its limit of requests in flight"}, status_code=503)
        self._in_flight += 1
        try:
            return await self._serve(request, api)
        finally:
            self._in_flight -= 1

    async def _serve(self, request: Request, api: str) -> Response:
        try:
            body = await read_json_object(request, self.settings.max_body_bytes)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        timing = Timing("", probe=request_id.startswith(PROBE_PREFIX))
        left = asyncio.create_task(_client_left(request))
        try:
            prefilled = await self._attempts(
                "prefill", timing, left, lambda b: self._prefill(b, api, _prefill_body(body), request_id)
            )
            if not isinstance(prefilled, tuple):
                return prefilled
            prefiller, answer = prefilled
            timing.prefilled, timing.prompt_tokens = time.monotonic(), answer.prompt_tokens
            kv = answer.kv_transfer_params
            decode_body = {**body, "kv_transfer_params": kv} if kv else body
            opened = await self._attempts(
                "decode", timing, left, lambda b: self._open_decode(b, api, decode_body, request_id)
            )
            if not isinstance(opened, tuple):
                return opened
            decoder, upstream = opened
        finally:
            left.cancel()
        timing.decode = decoder.name
        media = "text/event-stream; charset=utf-8" if body.get("stream") else "application/json"
        # the client splits its own TTFT with this: prefill, then hand-off + first decode step
        prefill_ms = (timing.prefilled - timing.arrived) * 1000
        headers = {"Server-Timing": f'prefill;dur={prefill_ms:.1f};desc="{prefiller.name}"'}
        held = Held(decoder, upstream)
        relay = self._relay(held, timing, sse=bool(body.get("stream")))
        # let go also when the client leaves before the first byte (the relay never starts)
        return StreamingResponse(
            relay,
            status_code=upstream.status_code,
            media_type=media,
            headers=headers,
            background=BackgroundTask(held.release),
        )

    async def _attempts(
        self,
        kind: Kind,
        timing: Timing,
        left: asyncio.Task[None],
        attempt: Callable[[Backend], Awaitable[Any | Failure]],
    ) -> tuple[Backend, Any] | Response:
        """One role's part of a request on the least busy healthy instance, and on another one while
        it fails before anything reached the client — at most max_retries others, within the retry
        budget. The client leaving ends it (whatever is under way upstream is cancelled)."""
        tried: list[Backend] = []
        failure: Failure | None = None
        while len(tried) <= self.settings.max_retries:
            if tried and time.monotonic() - timing.arrived > self.settings.retry_budget_s:
                break
            backend = self.pools[kind].pick(tried)
            if backend is None:
                break
            if tried:
                self.metrics.retries.labels(kind).inc()
            tried.append(backend)
            if kind == "prefill":
                timing.prefill = backend.name
            else:
                timing.decode = backend.name
            backend.active += 1
            kept = False  # a decode's answer keeps its place in the count until it is relayed
            work = asyncio.ensure_future(attempt(backend))
            try:
                await asyncio.wait({work, left}, return_when=asyncio.FIRST_COMPLETED)
                if not work.done():  # the client went away: nobody waits for this answer any more
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await work
                    timing.finish(self.metrics, "client_gone")
                    return Response(status_code=499)
                result = work.result()
                if not isinstance(result, Failure):
                    kept = kind == "decode"
                    return backend, result
            finally:
                if not kept:
                    backend.active -= 1
            failure = result
            log.warning("%s (request to %s)", result.message, kind)
            if not result.retry:
                break
        if failure is None:
            failure = Failure(503, f"no {kind} instance in rotation", f"{kind}_unavailable", retry=False)
        timing.finish(self.metrics, failure.outcome)
        return JSONResponse({"error": failure.message}, status_code=failure.status)

    async def _prefill(
        self, prefiller: Backend, api: str, body: dict[str, Any], request_id: str
    ) -> Prefilled | Failure:
        """What the prefill answered (its kv_transfer_params may be left out only where the
        settings allow), or why it did not."""
        try:
            response = await self._open(prefiller, api, body, request_id, self.settings.prefill_timeout)
            try:
                status, data = response.status_code, await _read_bounded(response, ANSWER_LIMIT)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            return self._unreachable(prefiller, "prefill", exc)
        if status != 200:
            return self._answered(prefiller, "prefill", status, data)
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            return Failure(502, f"prefiller {prefiller.name} answered no JSON object", "error", retry=True)
        kv = answer.get("kv_transfer_params")
        if not kv and self.settings.kv_params_required:
            why = (
                f"prefiller {prefiller.name} answered without kv_transfer_params: the decode would prefill the "
                "whole prompt again; check the prefill's kv_transfer_config (kv_role kv_producer) and its log"
            )
            return Failure(502, why, "no_kv_params", retry=True)
        usage = answer.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return Prefilled(kv, tokens if isinstance(tokens, int) else None)

    async def _open(
        self, backend: Backend, api: str, body: dict[str, Any], request_id: str, read_timeout: float
    ) -> httpx.Response:
        """A request to a backend, sent, its answer's head read (the body still to read or stream)."""
        client = self.clients.pick()
        request = client.build_request(
            "POST",
            backend.base + api,
            json=body,
            headers=self._headers(request_id, backend),
            timeout=self._timeout(read_timeout),
        )
        return await once_more_if_stale(lambda: client.send(request, stream=True))

    async def _open_decode(
        self, decoder: Backend, api: str, body: dict[str, Any], request_id: str
    ) -> httpx.Response | Failure:
        """The decode's streamed answer, its head read and nothing sent to the client yet; or why not."""
        try:
            upstream = await self._open(decoder, api, body, request_id, self.settings.decode_timeout)
        except httpx.TransportError as exc:
            return self._unreachable(decoder, "decode", exc)
        if upstream.status_code < 400:
            return upstream
        try:
            data = await _read_bounded(upstream, ERROR_LIMIT)
        except httpx.TransportError as exc:
            return self._unreachable(decoder, "decode", exc)
        finally:
            await upstream.aclose()
        return self._answered(decoder, "decode", upstream.status_code, data)

    @staticmethod
    def _unreachable(backend: Backend, role: Kind, exc: httpx.TransportError) -> Failure:
        what = "timed out" if isinstance(exc, httpx.TimeoutException) else f"unreachable ({type(exc).__name__})"
        if isinstance(exc, TooLarge):
            what = str(exc)
        else:
            backend.trip(what)
        return Failure(502, f"{WHO[role]} {backend.name} {what}", f"{role}_unreachable", retry=True)

    @staticmethod
    def _answered(backend: Backend, role: Kind, status: int, data: bytes) -> Failure:
        """An HTTP error from a backend, summarised: a client's mistake (4xx) is passed on with the
        server's message; a server's own failure (5xx) takes it out of rotation and is retried."""
        said = _error_message(data)
        if status < 500:
            return Failure(status, f"{WHO[role]} {backend.name} refused the request: {said}", "error", retry=False)
        backend.trip(f"answered HTTP {status}")
        return Failure(502, f"{WHO[role]} {backend.name} failed (HTTP {status}): {said}", "error", retry=True)

    async def _relay(self, held: Held, timing: Timing, *, sse: bool) -> AsyncIterator[bytes]:
        """The decode's bytes as they come. A stream cut once tokens went out is never replayed
        elsewhere: it ends with an error event saying so. The client leaving cancels this, which
        closes the upstream request: the decode stops generating for nobody."""
        outcome = "error"
        upstream, decoder = held.upstream, held.backend
        try:
            async for chunk in upstream.aiter_raw():
                timing.relayed(chunk)
                yield chunk
            outcome = "ok" if upstream.status_code == 200 else "error"
        except httpx.TransportError as exc:
            outcome = "decode_cut"
            log.warning("decode %s stopped mid-answer: %s", decoder.name, type(exc).__name__)
            decoder.trip(f"stopped mid-answer ({type(exc).__name__})")
            if sse:
                error = {"error": {"message": f"decoder {decoder.name} stopped mid-answer", "type": "upstream_error"}}
                yield f"data: {json.dumps(error)}\n\n".encode()
        finally:
            timing.finish(self.metrics, outcome)
            await held.release()

    async def metrics_page(self, request: Request) -> Response:
        """Prometheus text: every request's timings and outcome, retries, each backend's state (metrics.py)."""
        self.metrics.show_backends({kind: pool.backends for kind, pool in self.pools.items()})
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthcheck(self, request: Request) -> Response:
        """ok (200) while every role has a live backend in rotation, else degraded (503); each
        backend with its state (healthy, open: out of rotation until its /health answers,
        draining) and the requests it holds."""
        live = await self._live_backends()
        healthy = all(live.values()) and all(pool.healthy for pool in self.pools.values())
        return JSONResponse(
            {
                "status": "ok" if healthy else "degraded",
                "prefill_instances": len(self.pools["prefill"].backends),
                "decode_instances": len(self.pools["decode"].backends),
                "live_prefill_instances": live["prefill"],
                "live_decode_instances": live["decode"],
                "backends": {kind: [b.as_json() for b in pool.backends] for kind, pool in self.pools.items()},
            },
            status_code=200 if healthy else 503,
        )

    async def _live_backends(self) -> dict[Kind, int]:
        """How many backends of each role answer /health, asked at most once per HEALTH_TTL_S."""
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < HEALTH_TTL_S:
            return self._health[1]

        live: dict[Kind, int] = {}
        for kind, pool in self.pools.items():
            live[kind] = sum(await asyncio.gather(*(self._answers_health(b) for b in pool.backends)))
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

    async def _instances(self, request: Request, action: InstanceAction) -> Response:
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
        pool = self.pools[kind]
        places = []
        for item in items:
            host, _, digits = str(item).rpartition(":")
            if not host or not digits.isdigit() or not 0 < int(digits) < 65536:
                return JSONResponse({"error": f"bad instance '{item}', expected host:port"}, status_code=400)
            places.append((host.strip("[]"), int(digits)))
        if action in ("drain", "resume"):
            unknown = [f"{h}:{p}" for h, p in places if pool.find(h, p) is None]
            if unknown:
                return JSONResponse({"error": f"no {kind} instance {', '.join(unknown)}"}, status_code=404)
        # an added backend gets the API key only when the admin token's holder (cpconsole applying its
        # profile) says it is one of the deployment's own; an unauthenticated loopback client never
        trusted = bool(self.settings.admin_token) and body.get("trusted") is True
        for host, port in places:
            if action == "add":
                pool.add(host, port, trusted=trusted)
            elif action == "remove":
                pool.remove(host, port)
            else:
                backend = pool.find(host, port)
                assert backend is not None  # checked above
                backend.drain() if action == "drain" else backend.resume()
        self._health = None
        done = {"add": "added", "remove": "removed", "drain": "drained", "resume": "resumed"}[action]
        names = [f"{h}:{p}" for h, p in places]
        log.warning("%s %s %s instance(s) at run time: %s", request.client, done, kind, ", ".join(names))
        shown = [b.as_json() for b in pool.backends if (b.host, b.port) in places]
        return JSONResponse({"message": f"{done} {len(names)} {kind} instance(s)", "instances": shown or names})

    async def add_instances(self, request: Request) -> Response:
        return await self._instances(request, "add")

    async def remove_instances(self, request: Request) -> Response:
        return await self._instances(request, "remove")

    async def drain_instances(self, request: Request) -> Response:
        """Out of rotation for new requests; those it holds go on (`active` in /healthcheck)."""
        return await self._instances(request, "drain")

    async def resume_instances(self, request: Request) -> Response:
        return await self._instances(request, "resume")


def _prefill_body(body: dict[str, Any]) -> dict[str, Any]:
    """The request as the prefill gets it: one token out, not streamed, the KV kept for a decode."""
    prefill = {**body, "stream": False, "max_tokens": 1, "min_tokens": 1}
    prefill.pop("stream_options", None)
    if "max_completion_tokens" in body:
        prefill["max_completion_tokens"] = 1
    prefill["kv_transfer_params"] = {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "remote_engine_id": None,
        "remote_block_ids": None,
        "remote_host": None,
        "remote_port": None,
    }
    return prefill


async def _client_left(request: Request) -> None:
    """Returns when the client has gone (its request body is read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class TooLarge(httpx.TransportError):
    """A backend's answer over the size the proxy reads."""


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"answered more than {limit >> 20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_message(data: bytes) -> str:
    """What a backend's error answer says, short: vLLM's `message` (or `error` text), its first
    line; never a whole body — a 500 page or a traceback is not passed on."""
    with contextlib.suppress(ValueError):
        answer = json.loads(data)
        if isinstance(answer, dict):
            error = answer.get("error", answer)
            said = error.get("message") if isinstance(error, dict) else error
            if isinstance(said, str) and said:
                return terminal_safe(said.splitlines()[0])[:300]
    return f"no error message of vLLM's form ({len(data)} bytes not passed on)"
