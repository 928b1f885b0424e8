"""The simulated engine: queueing under --max-num-seqs, TTFT that grows with the prompt (its
attention share with the square of it) and shrinks with tp·pcp, decode steps with MTP acceptance, KV-cache accounting, vLLM's metrics
and its periodic stats line. Numbers come from `Timing`, set by environment variables."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .args import ServeArgs
from .metrics import VllmMetrics
from .text import answer_tokens
from .vlog import VllmLog

HBM_MB = 65536  # per chip (Atlas A3 die)
MODEL_GB = 700.0  # DeepSeek-V3.1 w8a8 with MTP, spread over the instance's chips
KV_BYTES_PER_TOKEN = 70_000  # MLA: 61 layers × 576 × 2 bytes
ACTIVATION_GB = 4.0


def prefill_seconds(timing: Timing, chips: int, prompt_tokens: int) -> float:
    """A prefill's time on `chips` (tp·pcp): a base, a linear part and attention's square."""
    linear = prompt_tokens / (timing.prefill_tokens_per_s_per_chip * chips)
    attention = timing.attention_s_per_token2_per_chip * prompt_tokens**2 / chips
    return float(timing.prefill_base_s + linear + attention)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Timing:
    """The simulator's speed; CPCONSOLE_SIM_* variables override each field."""

    prefill_tokens_per_s_per_chip: float = 4000.0
    prefill_base_s: float = 0.02
    # attention's share grows with the square of the prompt: about as much as the rest at 128k on TP16 PCP2
    attention_s_per_token2_per_chip: float = 2e-9
    decode_steps_per_s: float = 30.0
    kv_transfer_tokens_per_s: float = 2_000_000.0
    mtp_acceptance: float = 0.7

    @classmethod
    def from_env(cls) -> Timing:
        return cls(
            prefill_tokens_per_s_per_chip=_env_float("CPCONSOLE_SIM_PREFILL_TOKS", cls.prefill_tokens_per_s_per_chip),
            prefill_base_s=_env_float("CPCONSOLE_SIM_PREFILL_BASE_S", cls.prefill_base_s),
            attention_s_per_token2_per_chip=_env_float(
                "CPCONSOLE_SIM_ATTENTION_S", cls.attention_s_per_token2_per_chip
            ),
            decode_steps_per_s=_env_float("CPCONSOLE_SIM_DECODE_STEPS", cls.decode_steps_per_s),
            kv_transfer_tokens_per_s=_env_float("CPCONSOLE_SIM_KV_TRANSFER_TOKS", cls.kv_transfer_tokens_per_s),
            mtp_acceptance=_env_float("CPCONSOLE_SIM_MTP_ACCEPT", cls.mtp_acceptance),
        )


@dataclass(frozen=True)
class KvBudget:
    """Per-chip memory and the KV cache it leaves, as vLLM computes it at start-up."""

    weights_gb: float
    available_gb: float
    tokens: int

    @classmethod
    def of(cls, args: ServeArgs) -> KvBudget:
        chips = max(1, args.world_size * args.data_parallel_size)
        weights = max(2.0, MODEL_GB / chips)
        available = HBM_MB / 1024 * args.gpu_memory_utilization - weights - ACTIVATION_GB
        cp = args.prefill_context_parallel_size * args.decode_context_parallel_size
        tokens = int(max(0.0, available) * 1e9 / KV_BYTES_PER_TOKEN) * cp
        return cls(weights, available, tokens)


@dataclass
class Request:
    request_id: str
    prompt: str
    prompt_tokens: int
    max_tokens: int
    remote_prefill: bool = False  # decode side: KV arrives from a prefill instance
    prefill_only: bool = False  # prefill side of PD: one token, then hand over
    created: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Step:
    tokens: list[str]
    finish: str | None = None


class EngineDead(Exception):
    pass


class Engine:
    def __init__(self, args: ServeArgs, metrics: VllmMetrics, log: VllmLog, timing: Timing | None = None) -> None:
        self.args = args
        self.metrics = metrics
        self.log = log
        self.timing = timing or Timing.from_env()
        self.kv = KvBudget.of(args)
        self.slots = asyncio.Semaphore(args.max_num_seqs or 256)
        self.running = 0
        self.waiting = 0
        self.kv_in_use = 0
        self.completed = 0
        self._interval_prompt = 0
        self._interval_generated = 0
        self._rng = random.Random(args.seed)
        self.dead = False
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ accounting

    def _gauges(self) -> None:
        self.metrics.running.set(self.running)
        self.metrics.waiting.set(self.waiting)
        self.metrics.kv_usage.set(min(1.0, self.kv_in_use / self.kv.tokens) if self.kv.tokens else 0.0)

    @property
    def busy(self) -> float:
        """How busy the chips are, 0–1, for the simulated npu-smi."""
        return min(1.0, 0.15 * self.running + (0.2 if self.waiting else 0.0))

    def _prefill_seconds(self, req: Request) -> float:
        if req.remote_prefill:
            return req.prompt_tokens / self.timing.kv_transfer_tokens_per_s
        chips = self.args.tensor_parallel_size * self.args.prefill_context_parallel_size
        return prefill_seconds(self.timing, chips, req.prompt_tokens)

    def _accepted(self) -> int:
        accepted = 0
        while accepted < self.args.num_speculative_tokens and self._rng.random() < self.timing.mtp_acceptance:
            accepted += 1
        return accepted

    # ------------------------------------------------------------ generation

    async def generate(self, req: Request) -> AsyncIterator[Step]:
        if self.dead:
            raise EngineDead("EngineCore encountered an issue. See stack trace (above) for the root cause.")
        self.waiting += 1
        self._gauges()
        started = time.monotonic()
        async with self.slots:
            self.waiting -= 1
            self.running += 1
            queued = time.monotonic()
            self.metrics.queue.observe(queued - started)
            self.kv_in_use += req.prompt_tokens
            self._gauges()
            generated = 0
            finish = "abort"
            try:
                await asyncio.sleep(self._prefill_seconds(req))
                prefilled = time.monotonic()
                source = "external_kv_transfer" if req.remote_prefill else "local_compute"
                self.metrics.tokens_by_source[source].inc(req.prompt_tokens)
                self.metrics.prompt_tokens.inc(req.prompt_tokens)
                self.metrics.step_tokens.observe(req.prompt_tokens)
                self.metrics.prefix_queries.inc(req.prompt_tokens)
                self._interval_prompt += req.prompt_tokens
                self.metrics.prefill_time.observe(prefilled - queued)
                self.metrics.ttft.observe(prefilled - req.created)
                tokens, finish = answer_tokens(req.prompt, self.args.seed, 1 if req.prefill_only else req.max_tokens)
                if req.prefill_only:
                    finish = "length"
                last = prefilled
                position = 0
                while position < len(tokens):
                    if position:
                        await asyncio.sleep(1 / self.timing.decode_steps_per_s)
                        now = time.monotonic()
                        self.metrics.itl.observe(now - last)
                        last = now
                    count = 1 + (self._spec_step() if position else 0)
                    batch = tokens[position : position + count]
                    position += len(batch)
                    generated += len(batch)
                    self.kv_in_use += len(batch)
                    self.metrics.generation_tokens.inc(len(batch))
                    if position > len(batch):  # the first token came with the prefill's step
                        self.metrics.step_tokens.observe(len(batch))
                    self._interval_generated += len(batch)
                    self._gauges()
                    yield Step(batch, finish if position >= len(tokens) else None)
                done = time.monotonic()
                self.metrics.decode_time.observe(done - prefilled)
                self.metrics.e2e.observe(done - req.created)
                if generated > 1:
                    self.metrics.tpot.observe((done - prefilled) / (generated - 1))
            finally:
                self.running -= 1
                self.kv_in_use -= req.prompt_tokens + generated
                self.metrics.success[finish].inc()
                self.metrics.request_prompt.observe(req.prompt_tokens)
                self.metrics.request_generation.observe(generated)
                self.completed += 1
                self._gauges()

    def _spec_step(self) -> int:
        k = self.args.num_speculative_tokens
        if not k:
            return 0
        accepted = self._accepted()
        self.metrics.drafts.inc()
        self.metrics.draft_tokens.inc(k)
        self.metrics.accepted.inc(accepted)
        for position in range(accepted):
            self.metrics.accepted_per_pos[position].inc()
        return accepted

    # ------------------------------------------------------------ background

    async def log_stats(self, interval: float) -> None:
        """vLLM's periodic stats line; silent while idle, as vLLM logs it at DEBUG then."""
        while True:
            await asyncio.sleep(interval)
            prompt, generated = self._interval_prompt, self._interval_generated
            self._interval_prompt = self._interval_generated = 0
            if not (prompt or generated or self.running or self.waiting):
                continue
            usage = 100 * min(1.0, self.kv_in_use / self.kv.tokens) if self.kv.tokens else 0.0
            self.log.api(
                "loggers.py:236",
                f"Engine 000: Avg prompt throughput: {prompt / interval:.1f} tokens/s, "
                f"Avg generation throughput: {generated / interval:.1f} tokens/s, Running: {self.running} reqs, "
                f"Waiting: {self.waiting} reqs, GPU KV cache usage: {usage:.1f}%, Prefix cache hit rate: 0.0%",
            )

    async def background_traffic(self, rate: float) -> None:
        """Synthetic requests (CPCONSOLE_SIM_BACKGROUND_RPS) so a demo's panels move."""
        role = self.args.kv_role
        number = 0
        while True:
            await asyncio.sleep(self._rng.expovariate(rate))
            number += 1
            size = self._rng.randint(500, 6000)
            req = Request(
                f"background-{number}",
                f"background request {number}",
                size,
                self._rng.randint(16, 128),
                remote_prefill=role == "kv_consumer",
                prefill_only=role == "kv_producer",
            )
            task = asyncio.create_task(self._drain(req))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _drain(self, req: Request) -> None:
        try:
            async for _ in self.generate(req):
                pass
        except EngineDead:
            return
