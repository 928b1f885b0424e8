"""The simulator's HTTP surface: vLLM's OpenAI-compatible endpoints with vLLM's shapes
(SSE chunks, usage, errors), the PD `kv_transfer_params` hand-off, and injectable faults."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .args import VERSION, ServeArgs
from .engine import Engine, EngineDead, Request
from .text import chat_prompt, count_tokens, tokenize

DEFAULT_CHAT_MAX_TOKENS = 256


@dataclass(frozen=True)
class Faults:
    """CPCONSOLE_SIM_* fault switches read at start-up."""

    hang: bool = False
    health_503: bool = False
    metrics_delay_s: float = 0.0
    metrics_garbage: bool = False
    crash_after: int = 0

    @classmethod
    def from_env(cls) -> Faults:
        env = os.environ
        return cls(
            hang=env.get("CPCONSOLE_SIM_HANG") == "1",
            health_503=env.get("CPCONSOLE_SIM_HEALTH_503") == "1",
            metrics_delay_s=float(env.get("CPCONSOLE_SIM_METRICS_DELAY_S", "0") or 0),
            metrics_garbage=env.get("CPCONSOLE_SIM_METRICS_GARBAGE") == "1",
            crash_after=int(env.get("CPCONSOLE_SIM_CRASH_AFTER", "0") or 0),
        )


def error(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": status}}, status_code=status
    )


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"data: {payload}\n\n".encode()


class ApiKeyMiddleware:
    """vLLM's rule with VLLM_API_KEY (or --api-key) set: every path under /v1 wants
    `Authorization: Bearer <key>`, else 401 {"error": "Unauthorized"}; the rest stays open."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key and scope["type"] == "http" and scope["method"] != "OPTIONS" and scope["path"].startswith("/v1"):
            given = Headers(scope=scope).get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {self.key}".encode()):
                await JSONResponse({"error": "Unauthorized"}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SimServer:
    def __init__(
        self, args: ServeArgs, engine: Engine, faults: Faults, on_fatal: Callable[[str], None], host: str
    ) -> None:
        self.args = args
        self.engine = engine
        self.faults = faults
        self.on_fatal = on_fatal
        self.host = host
        self.fingerprint = f"vllm-{VERSION}-sim"
        self._never = asyncio.Event()
        self.app = Starlette(
            middleware=[Middleware(ApiKeyMiddleware, key=os.environ.get("VLLM_API_KEY", ""))],
            routes=[
                Route("/health", self.health),
                Route("/ping", self.health, methods=["GET", "POST"]),
                Route("/version", self.version),
                Route("/load", self.load),
                Route("/v1/models", self.models),
                Route("/metrics", self.metrics),
                Route("/tokenize", self.tokenize, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ],
        )

    async def _hang_if_asked(self) -> None:
        if self.faults.hang:
            await self._never.wait()

    # ------------------------------------------------------------ probes

    async def health(self, request: HttpRequest) -> Response:
        await self._hang_if_asked()
        dead = self.faults.health_503 or self.engine.dead
        return Response(status_code=503 if dead else 200)

    async def version(self, request: HttpRequest) -> Response:
        await self._hang_if_asked()
        return JSONResponse({"version": VERSION})

    async def load(self, request: HttpRequest) -> Response:
        await self._hang_if_asked()
        return JSONResponse({"server_load": self.engine.running + self.engine.waiting})

    async def models(self, request: HttpRequest) -> Response:
        await self._hang_if_asked()
        created = int(time.time())
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": self.args.model_name,
                        "object": "model",
                        "created": created,
                        "owned_by": "vllm",
                        "root": self.args.model_tag,
                        "parent": None,
                        "max_model_len": self.args.max_model_len,
                        "permission": [],
                    }
                ],
            }
        )

    async def metrics(self, request: HttpRequest) -> Response:
        await self._hang_if_asked()
        if self.faults.metrics_delay_s:
            await asyncio.sleep(self.faults.metrics_delay_s)
        if self.faults.metrics_garbage:
            return Response(b"\x00\xffvllm:num_requests_running{{{ not prometheus\n", media_type="text/plain")
        return Response(self.engine.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def tokenize(self, request: HttpRequest) -> Response:
        body = await request.json()
        text = body.get("prompt") or chat_prompt(body.get("messages") or [])
        tokens = tokenize(text)
        return JSONResponse(
            {"count": len(tokens), "max_model_len": self.args.max_model_len, "tokens": list(range(len(tokens)))}
        )

    # ------------------------------------------------------------ generation

    def _check(self, body: dict[str, Any], prompt_tokens: int, max_tokens: int) -> Response | None:
        model = body.get("model")
        if model not in (None, "", self.args.model_name):
            return error(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
        limit = self.args.max_model_len
        if limit and prompt_tokens > limit:
            # vLLM 0.32's words when the prompt alone does not fit (seen against the real server)
            return error(
                400,
                f"This model's maximum context length is {limit} tokens. However, your prompt contains at least "
                f"{limit + 1} input tokens, which exceeds this limit even without any output tokens. Please reduce "
                f"the length of the input prompt. (parameter=input_tokens, value={limit + 1})",
                "BadRequestError",
                "input_tokens",
            )
        if limit and prompt_tokens + max_tokens > limit:
            return error(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion.",
                "BadRequestError",
            )
        return None

    async def completions(self, request: HttpRequest) -> Response:
        await self._hang_if_asked()
        body = await request.json()
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):  # token ids (vllm bench's random dataset, the sweep): one word each
            prompt = "".join(f" w{t}" if isinstance(t, int) else str(t) for t in prompt)
        else:
            prompt = str(prompt)
        return await self._serve(request, body, prompt, int(body.get("max_tokens") or 16), chat=False)

    async def chat(self, request: HttpRequest) -> Response:
        await self._hang_if_asked()
        body = await request.json()
        prompt = chat_prompt(body.get("messages") or [])
        wanted = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_CHAT_MAX_TOKENS
        return await self._serve(request, body, prompt, int(wanted), chat=True)

    async def _serve(
        self, request: HttpRequest, body: dict[str, Any], prompt: str, max_tokens: int, *, chat: bool
    ) -> Response:
        prompt_tokens = count_tokens(prompt)
        refusal = self._check(body, prompt_tokens, max_tokens)
        if refusal is not None:
            return refusal
        kv_in = body.get("kv_transfer_params") or {}
        req = Request(
            request.headers.get("x-request-id") or secrets.token_hex(8),
            prompt,
            prompt_tokens,
            max_tokens,
            remote_prefill=bool(kv_in.get("do_remote_prefill")),
            prefill_only=bool(kv_in.get("do_remote_decode")),
        )
        rid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(8)
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(self._stream(req, rid, chat, usage), media_type="text/event-stream; charset=utf-8")
        text, finish, generated = "", None, 0
        try:
            async for step in self.engine.generate(req):
                text += "".join(step.tokens)
                generated += len(step.tokens)
                finish = step.finish
        except EngineDead as exc:
            return error(500, str(exc), "InternalServerError")
        finally:
            self._count_request()
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish, "stop_reason": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text, "reasoning_content": None, "tool_calls": []}
        else:
            choice["text"] = text
        return JSONResponse(
            {
                "id": rid,
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": self.args.model_name,
                "choices": [choice],
                "usage": self._usage(prompt_tokens, generated),
                "system_fingerprint": self.fingerprint,
                "kv_transfer_params": self._kv_out(req) if req.prefill_only else None,
            }
        )

    def _usage(self, prompt_tokens: int, generated: int) -> dict[str, Any]:
        return {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + generated,
            "completion_tokens": generated,
            "prompt_tokens_details": None,
        }

    def _kv_out(self, req: Request) -> dict[str, Any]:
        """What a Mooncake prefiller hands the decoder: where to pull this request's KV from."""
        kv = self.args.kv
        blocks = max(1, -(-req.prompt_tokens // self.args.block))
        return {
            "do_remote_prefill": True,
            "do_remote_decode": False,
            "remote_block_ids": list(range(blocks)),
            "remote_engine_id": str(kv.get("engine_id", "0")),
            "remote_host": self.host,
            "remote_port": int(kv.get("kv_port", 0) or 0),
            "tp_size": self.args.tensor_parallel_size,
        }

    async def _stream(self, req: Request, rid: str, chat: bool, usage: bool) -> AsyncIterator[bytes]:
        created, model = int(time.time()), self.args.model_name
        head = {
            "id": rid,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": model,
        }
        generated = 0
        try:
            if chat:
                first = {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
                yield sse({**head, "choices": [first], "prompt_token_ids": None, "prompt_text": None})
            async for step in self.engine.generate(req):
                text = "".join(step.tokens)
                generated += len(step.tokens)
                if chat:
                    choice: dict[str, Any] = {
                        "index": 0,
                        "delta": {"content": text},
                        "logprobs": None,
                        "finish_reason": None,
                        "token_ids": None,
                    }
                else:
                    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": None, "stop_reason": None}
                yield sse({**head, "choices": [choice]})
                if step.finish:
                    end = {**choice, "finish_reason": step.finish, "stop_reason": None}
                    end["delta" if chat else "text"] = {"content": ""} if chat else ""
                    yield sse({**head, "choices": [end]})
            if usage:
                yield sse(
                    {
                        **head,
                        "choices": [],
                        "usage": self._usage(req.prompt_tokens, generated),
                        "system_fingerprint": self.fingerprint,
                    }
                )
            yield sse("[DONE]")
        except EngineDead as exc:
            yield sse({"error": {"message": str(exc), "type": "InternalServerError", "code": 500}})
        finally:
            self._count_request()

    def _count_request(self) -> None:
        crash = self.faults.crash_after
        if crash and self.engine.completed >= crash and not self.engine.dead:
            self.engine.dead = True
            self.on_fatal(f"simulated crash after {crash} requests (CPCONSOLE_SIM_CRASH_AFTER)")
