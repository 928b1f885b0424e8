"""The context-length sweep: for each length, requests whose prompts are exactly that many tokens by
the server's own tokenizer, sent one at a time; their TTFT, its split (the prefill as cpconsole's
proxy reports it, then the KV hand-off and first decode step) and TPOT. Each request opens with its
own sentence, so no request reuses another's prefix cache. Runs are stored with the profile's digest
and prefill layout, so a sweep compares with earlier ones (e.g. the same profile with PCP off)."""

from __future__ import annotations

import dataclasses
import random
import re
import secrets
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..plan import LaunchPlan, ProcessPlan
from . import store
from .client import RequestResult, stream_request
from .prompts import filler

KIND = "sweep"
LENGTHS = (8 * 1024, 32 * 1024, 64 * 1024, 128 * 1024)
_LENGTH = re.compile(r"(\d+)([km]?)", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def parse_lengths(text: str) -> tuple[int, ...]:
    """'8k,32k,131072' → (8192, 32768, 131072): tokens, k = 1024 as vLLM's own 128k = 131072."""
    lengths = []
    for part in (p.strip() for p in text.split(",")):
        match = _LENGTH.fullmatch(part)
        if not match or int(match[1]) == 0:
            raise ValueError(f"'{part}' is not a length in tokens (e.g. 8k, 32k, 131072)")
        lengths.append(int(match[1]) * _UNITS[match[2].lower()])
    return tuple(sorted(set(lengths)))


def short_length(tokens: int) -> str:
    return f"{tokens // 1024}k" if tokens % 1024 == 0 else str(tokens)


@dataclass(frozen=True)
class SweepSettings:
    lengths: tuple[int, ...] = LENGTHS
    repeat: int = 3
    max_tokens: int = 16
    target: str = "proxy"


@dataclass(frozen=True)
class SweepPoint:
    """One length's requests, summed up by their medians (one slow outlier does not move them)."""

    length: int
    sent: int
    ok: int
    ttft_s: float | None = None
    prefill_s: float | None = None
    handoff_s: float | None = None
    tpot_s: float | None = None
    error: str | None = None  # the first failure's words, or why nothing was sent
    prompt_tokens: int | None = None  # as the server counted the prompt (its usage)

    @classmethod
    def of(cls, length: int, results: Sequence[RequestResult]) -> SweepPoint:
        good = [r for r in results if r.ok]

        def median(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None]
            return statistics.median(known) if known else None

        return cls(
            length,
            len(results),
            len(good),
            median([r.ttft_s for r in good]),
            median([r.prefill_s for r in good]),
            median([r.handoff_s for r in good]),
            median([r.tpot_s for r in good]),
            next((r.error for r in results if r.error), None),
            next((r.prompt_tokens for r in good if r.prompt_tokens is not None), None),
        )


@dataclass(frozen=True)
class SweepRun:
    profile: str
    digest: str
    layout: str  # the prefill's parallelism, e.g. "TP16 PCP2 DCP8"
    model: str  # the served weights' path
    started: str  # local time, also the run's id
    settings: SweepSettings
    points: tuple[SweepPoint, ...]

    @property
    def complete(self) -> bool:
        """Every length measured and every request answered."""
        return all(p.sent and p.ok == p.sent for p in self.points)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepRun:
        """A stored run; KeyError/TypeError/ValueError when it is not one."""
        settings = dict(data["settings"])
        settings["lengths"] = tuple(int(n) for n in settings["lengths"])
        return cls(
            str(data["profile"]),
            str(data["digest"]),
            str(data["layout"]),
            str(data["model"]),
            str(data["started"]),
            SweepSettings(**settings),
            tuple(SweepPoint(**point) for point in data["points"]),
        )


@dataclass(frozen=True)
class Reference:
    """A published figure to set beside a sweep of the same deployment."""

    length: int
    ttft_s: float
    prompts: int
    layout: str
    model: str  # a word of the served model's path
    source: str

    def applies(self, run: SweepRun) -> bool:
        return run.layout == self.layout and self.model.lower() in run.model.lower()


# the guide's Performance section: vllm bench serve, random dataset, 131072 input tokens, 20 prompts
GUIDE = Reference(
    131072, 20.7, 20, "TP16 PCP2 DCP8", "DeepSeek-V3.1", "vllm bench serve, random 128k prompts, 20 at once"
)


def reference_for(run: SweepRun) -> Reference | None:
    return GUIDE if GUIDE.applies(run) else None


def prefill_master(plan: LaunchPlan) -> ProcessPlan | None:
    """The API server that prefills (a colocated one when there is no PD split)."""
    servers = [p for p in plan.processes if p.http_port and p.role in ("prefill", "colocated")]
    return next((p for p in servers if p.role == "prefill"), servers[0] if servers else None)


def model_path(plan: LaunchPlan) -> str:
    master = prefill_master(plan)
    return master.argv[master.argv.index("serve") + 1] if master and "serve" in master.argv else ""


def layout(plan: LaunchPlan) -> str:
    master = prefill_master(plan)
    if master is None:
        return "?"
    tp = master.int_flag("--tensor-parallel-size", "-tp") or 1
    pcp = master.int_flag("--prefill-context-parallel-size", "-pcp") or 1
    dcp = master.int_flag("--decode-context-parallel-size", "-dcp") or 1
    return f"TP{tp} PCP{pcp} DCP{dcp}"


class Tokenizer:
    """The prefill server's /tokenize: token ids exactly as the model will count them."""

    def __init__(self, http: httpx.AsyncClient, plan: LaunchPlan) -> None:
        master = prefill_master(plan)
        if master is None:
            raise ValueError("the profile has no API server that prefills: nothing to count tokens with")
        self.http, self.url, self.model = http, master.base_url + "/tokenize", plan.model_name
        self.max_model_len: int | None = None

    async def ids(self, text: str, *, special: bool) -> list[int]:
        body = {"model": self.model, "prompt": text, "add_special_tokens": special}
        answer = await self.http.post(self.url, json=body, timeout=120)
        answer.raise_for_status()
        data = answer.json()
        if isinstance(data.get("max_model_len"), int):
            self.max_model_len = data["max_model_len"]
        return [int(t) for t in data["tokens"]]

    async def filler_ids(self, tokens: int, seed: int) -> list[int]:
        """At least `tokens` ids of filler (the text grows until the tokenizer says it is enough)."""
        want = tokens
        for _ in range(6):
            ids = await self.ids(" " + " ".join(filler(want, random.Random(seed))), special=False)
            if len(ids) >= tokens:
                return ids[:tokens]
            want = int(want * tokens / max(1, len(ids)) * 1.1) + 16
        raise ValueError(f"the tokenizer made fewer than {tokens} tokens of {want} tokens' worth of text")


async def exact_prompts(tokenizer: Tokenizer, length: int, count: int) -> list[list[int]]:
    """`count` prompts of exactly `length` token ids, each opening with its own sentence."""
    body = await tokenizer.filler_ids(length, seed=length)
    prompts = []
    for _ in range(count):
        head = await tokenizer.ids(f"Sweep request {secrets.token_hex(6)}.", special=True)
        prompts.append((head + body)[:length])
    return prompts


async def run_sweep(
    plan: LaunchPlan,
    http: httpx.AsyncClient,
    settings: SweepSettings,
    *,
    on_point: Callable[[SweepPoint], object] = lambda _: None,
    timeout: float = 1800.0,
) -> SweepRun:
    """Every length in turn, `repeat` requests each, one at a time; a length that does not fit the
    model (max_model_len, with the answer's tokens) is a point with its reason, not a request."""
    started = store.stamp()
    tokenizer = Tokenizer(http, plan)
    base = plan.process(settings.target).base_url
    points = []
    for length in settings.lengths:
        try:
            prompts = await exact_prompts(tokenizer, length, settings.repeat)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            point = SweepPoint(length, 0, 0, error=f"cannot count tokens with {tokenizer.url}: {exc}")
        else:
            limit = tokenizer.max_model_len
            if limit is not None and length + settings.max_tokens > limit:
                why = f"{length} + {settings.max_tokens} tokens do not fit max_model_len {limit}"
                point = SweepPoint(length, 0, 0, error=why)
            else:
                results = [
                    await stream_request(
                        http, base, model=plan.model_name, prompt=p, max_tokens=settings.max_tokens, timeout=timeout
                    )
                    for p in prompts
                ]
                point = SweepPoint.of(length, results)
        points.append(point)
        on_point(point)
    return SweepRun(plan.profile, plan.digest, layout(plan), model_path(plan), started, settings, tuple(points))


def store_sweep(run: SweepRun, root: Path | None = None) -> Path:
    return store.save(KIND, run.profile, run.started, run.as_json(), root)


def load_sweeps(profile: str, root: Path | None = None) -> list[SweepRun]:
    """Every stored sweep of a profile, oldest first; unreadable ones are skipped."""
    runs = []
    for record in store.records(KIND, profile, root):
        try:
            runs.append(SweepRun.from_json(record))
        except (KeyError, TypeError, ValueError):
            continue
    return runs
