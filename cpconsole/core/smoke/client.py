"""A streaming OpenAI-compatible client that measures each request the way `vllm bench serve`
does (vllm-ascend-facts.md §5):

- TTFT: request sent → first SSE message with non-empty `choices` (its text may be empty);
- ITL: gaps between successive messages with choices (an MTP chunk of several tokens counts once);
- E2E: request sent → last message with choices (chat: the usage message too);
- output tokens: `usage.completion_tokens` of the final usage message (asked for with
  `stream_options.include_usage`);
- TPOT: (E2E − TTFT) / (output tokens − 1);
- prefill: what cpconsole's proxy says in its `Server-Timing: prefill;dur=…` header (request at the
  proxy → the prefill's answer); the rest of the TTFT is the KV hand-off and the first decode step.

Every failure (HTTP status, bad JSON, a stream cut short, a timeout) is a result with `error`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..httpclient import status_text

REQUEST_ID_PREFIX = "cpconsole-"


@dataclass(frozen=True)
class RequestResult:
    error: str | None = None
    status: int | None = None
    ttft_s: float | None = None
    itl_s: tuple[float, ...] = ()
    e2e_s: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    text: str = ""
    finish_reason: str | None = None
    request_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    prefill_s: float | None = None  # from the proxy's Server-Timing; None without cpconsole's proxy

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tpot_s(self) -> float | None:
        if self.e2e_s is None or self.ttft_s is None or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def handoff_s(self) -> float | None:
        """TTFT after the prefill: KV transfer to the decode and its first step (network included)."""
        if self.ttft_s is None or self.prefill_s is None:
            return None
        return max(0.0, self.ttft_s - self.prefill_s)

    @property
    def tokens_per_s(self) -> float | None:
        if not self.output_tokens or not self.e2e_s:
            return None
        return self.output_tokens / self.e2e_s


def percentile(values: tuple[float, ...] | list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks, as numpy's default (vllm bench uses numpy)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def server_timing(header: str) -> dict[str, float]:
    """Durations of a Server-Timing header (W3C: `name;dur=ms;desc="…", …`) in seconds; entries
    without a readable dur are left out."""
    out = {}
    for entry in header.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur" and name:
                with contextlib.suppress(ValueError):
                    out[name] = float(value.strip().strip('"')) / 1000
    return out


def _piece(choice: dict[str, Any], chat: bool) -> str:
    if not chat:
        return str(choice.get("text") or "")
    delta = choice.get("delta") or {}
    return str(delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning") or "")


async def _sse_data(answer: httpx.Response) -> AsyncGenerator[str, None]:
    """The `data:` payloads of an SSE stream, split on blank lines by hand: httpx's line iterator
    (decode → text → lines) cost ~1 ms per request here, 3 % of a CPU-served TTFT."""
    chunks = answer.aiter_bytes() if answer.headers.get("content-encoding") else answer.aiter_raw()
    pending = b""
    async for chunk in chunks:
        pending = (pending + chunk).replace(b"\r\n", b"\n")  # a \r\n may straddle two chunks
        *messages, pending = pending.split(b"\n\n")
        for message in messages:
            for line in message.split(b"\n"):
                if line.startswith(b"data:"):
                    yield line[5:].strip().decode("utf-8", "replace")
    for line in pending.split(b"\n"):  # a last message without its blank line
        if line.startswith(b"data:"):
            yield line[5:].strip().decode("utf-8", "replace")


async def stream_request(
    http: httpx.AsyncClient,
    base_url: str,
    *,
    model: str,
    prompt: str | list[int] | None = None,  # text, or token ids as vllm bench's random dataset sends
    messages: list[dict[str, str]] | None = None,
    max_tokens: int = 64,
    temperature: float | None = 0.0,  # None: the server's default, as vllm bench serve sends
    timeout: float = 600.0,
    request_id: str | None = None,
    on_text: Callable[[str], None] | None = None,  # each piece of the answer as it arrives
) -> RequestResult:
    """One streamed completion (prompt) or chat completion (messages), measured."""
    chat = messages is not None
    rid = request_id or REQUEST_ID_PREFIX + secrets.token_hex(8)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if temperature is not None:
        body["temperature"] = temperature
    body["messages" if chat else "prompt"] = messages if chat else prompt
    url = base_url.rstrip("/") + ("/v1/chat/completions" if chat else "/v1/completions")
    started = time.perf_counter()
    ttft: float | None = None
    last: float | None = None
    gaps: list[float] = []
    text: list[str] = []
    finish: str | None = None
    usage: dict[str, Any] = {}
    prefill: float | None = None
    try:
        async with (
            http.stream("POST", url, json=body, headers={"X-Request-Id": rid}, timeout=timeout) as answer,
            contextlib.aclosing(_sse_data(answer)) as payloads,
        ):
            if answer.status_code != 200:
                detail = (await answer.aread()).decode("utf-8", "replace")
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    detail = json.loads(detail)["error"]["message"]
                return RequestResult(
                    f"{status_text(answer.status_code)}: {str(detail)[:300]}", answer.status_code, request_id=rid
                )
            prefill = server_timing(answer.headers.get("server-timing", "")).get("prefill")
            done = False
            async for payload in payloads:
                # read on to the end of the body after [DONE]: a response left unread closes its
                # connection, and the next request would pay for a new one (seen: one per request)
                done = done or payload == "[DONE]"
                if done:
                    continue
                try:
                    chunk = json.loads(payload)
                except ValueError:
                    return RequestResult(f"bad JSON in the stream: {payload[:120]!r}", 200, request_id=rid)
                now = time.perf_counter()
                if chunk.get("error"):
                    return RequestResult(f"error in the stream: {chunk['error']}", 200, request_id=rid)
                if chunk.get("usage"):
                    usage = chunk["usage"]
                    if chat and last is not None:
                        last = now  # chat: the usage message ends the request
                choices = chunk.get("choices") or []
                if choices:
                    if ttft is None:
                        ttft = now - started
                    elif last is not None:
                        gaps.append(now - last)
                    last = now
                    piece = _piece(choices[0], chat)
                    text.append(piece)
                    if on_text is not None and piece:
                        on_text(piece)
                    finish = choices[0].get("finish_reason") or finish
    except httpx.TimeoutException:
        return RequestResult(f"timed out after {timeout:g} s", request_id=rid)
    except httpx.HTTPError as exc:
        return RequestResult(f"connection failed: {exc!r}", request_id=rid)
    if ttft is None:
        return RequestResult("the stream ended without a single choice", 200, request_id=rid)
    return RequestResult(
        None,
        200,
        ttft,
        tuple(gaps),
        (last or started) - started,
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        "".join(text),
        finish,
        rid,
        prefill_s=prefill,
    )
