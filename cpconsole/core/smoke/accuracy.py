"""cpconsole's own quick accuracy check — no AISBench needed, on any deployment: a sample of a public
dataset's items (shipped in datasets/, with their source and licence) sent through the chat API
(the proxy by default), the answer extracted as the dataset's graders do, scored against the
reference answer, every answer kept for inspection. The guide's accuracy figure (AISBench,
aime2024, 86.67 for DeepSeek-V3.1-w8a8) is shown beside runs of that dataset."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..plan import LaunchPlan
from . import store
from .client import stream_request

DATASETS = Path(__file__).with_name("datasets")
# the guide's: AISBench, aime2024_gen_0_shot_chat_prompt, DeepSeek-V3.1-w8a8 with this layout
REFERENCE = {"aime2024": 86.67}
# what the graders ask of a chat model (Qwen2.5-Math's and DeepSeek's evaluation prompts)
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
PROMPT_ROOM = 512  # tokens a built-in dataset's question takes at most, with the instruction
QUICK_ITEMS = 20  # the console's check: enough to tell right from garbage, quick on a real deployment
ANSWER_TOKENS = 1024  # room to reason through a GSM8K item


def answer_budget(shortest_context: int | None) -> int:
    """Tokens an answer may take: ANSWER_TOKENS, less where the smallest max_model_len leaves less."""
    if shortest_context is None:
        return ANSWER_TOKENS
    return max(1, min(ANSWER_TOKENS, shortest_context - PROMPT_ROOM))


_BOXED = re.compile(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> str | None:
    """The answer a grader reads: the last \\boxed{…} holding a number, else the last number of
    the text; thousands separators, a currency sign and a trailing `.0` dropped."""
    boxed: list[list[str]] = [m for b in _BOXED.findall(text) if (m := _NUMBER.findall(b))]
    found: list[str] = boxed[-1] if boxed else _NUMBER.findall(text)
    if not found:
        return None
    number = found[-1].replace(",", "")
    return number[:-2] if number.endswith(".0") else number


def same_number(answer: str | None, expected: str) -> bool:
    if answer is None:
        return False
    try:
        return abs(float(answer) - float(expected)) < 1e-6
    except ValueError:
        return answer == expected


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    answer: str


def load_items(dataset: str, limit: int | None = None) -> list[Item]:
    """The dataset's items in their file's order, the first `limit` of them."""
    path = DATASETS / f"{dataset}.jsonl"
    if not path.is_file():
        known = sorted(p.stem for p in DATASETS.glob("*.jsonl"))
        raise ValueError(f"no built-in dataset {dataset!r}: there are {', '.join(known)}")
    items = [Item(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return items[:limit] if limit else items


def datasets() -> list[str]:
    return sorted(p.stem for p in DATASETS.glob("*.jsonl"))


@dataclass(frozen=True)
class ItemResult:
    id: str
    expected: str
    answer: str | None  # what was extracted from the text; None: no number in it
    correct: bool
    text: str  # the whole answer, for inspection
    error: str | None = None  # the request failed: counted wrong


@dataclass
class AccuracyRun:
    profile: str
    digest: str
    started: str
    dataset: str
    target: str
    max_tokens: int
    items: list[ItemResult] = field(default_factory=list)
    tool: str = "cpconsole"

    @property
    def samples(self) -> int:
        return len(self.items)

    @property
    def accuracy(self) -> float:
        """Percent of the items answered right (a failed request is a wrong answer)."""
        return 100 * sum(i.correct for i in self.items) / self.samples if self.items else 0.0

    @property
    def reference(self) -> float | None:
        return REFERENCE.get(self.dataset)

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "tool": self.tool,
            "samples": self.samples,
            "accuracy": round(self.accuracy, 2),
            "reference": self.reference,
            "profile": self.profile,
            "digest": self.digest,
            "started": self.started,
            "target": self.target,
            "max_tokens": self.max_tokens,
            "items": [asdict(i) for i in self.items],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccuracyRun:
        run = cls(
            str(data["profile"]),
            str(data["digest"]),
            str(data["started"]),
            str(data["dataset"]),
            str(data["target"]),
            int(data["max_tokens"]),
            tool=str(data.get("tool", "cpconsole")),
        )
        run.items = [ItemResult(**item) for item in data["items"]]
        return run


async def run_accuracy(
    plan: LaunchPlan,
    http: httpx.AsyncClient,
    *,
    dataset: str,
    target: str,
    limit: int | None,
    max_tokens: int,
    concurrency: int = 8,
    on_item: Callable[[ItemResult, int, int], None] = lambda *_: None,
) -> AccuracyRun:
    """Every item of the sample through the target, `concurrency` at a time, greedy (temperature
    0, as the graders' runs); `on_item` hears each result with the count done and the total."""
    items = load_items(dataset, limit)
    run = AccuracyRun(plan.profile, plan.digest, store.stamp(), dataset, target, max_tokens)
    base_url = plan.process(target).base_url
    gate = asyncio.Semaphore(concurrency)
    done: dict[str, ItemResult] = {}

    async def one(item: Item) -> None:
        async with gate:
            answered = await stream_request(
                http,
                base_url,
                model=plan.model_name,
                messages=[{"role": "user", "content": f"{item.question}\n{INSTRUCTION}"}],
                max_tokens=max_tokens,
                temperature=0.0,
            )
        number = final_number(answered.text) if answered.ok else None
        result = ItemResult(
            item.id, item.answer, number, same_number(number, item.answer), answered.text, answered.error
        )
        done[item.id] = result
        on_item(result, len(done), len(items))

    await asyncio.gather(*(one(item) for item in items))
    run.items = [done[item.id] for item in items]  # in the dataset's order, whatever finished first
    return run


def store_accuracy(run: AccuracyRun, root: Path | None = None) -> Path:
    return store.save("accuracy", run.profile, run.started, run.as_json(), root)


def load_accuracy(profile: str, root: Path | None = None) -> list[AccuracyRun]:
    out = []
    for record in store.records("accuracy", profile, root):
        try:
            out.append(AccuracyRun.from_json(record))
        except (KeyError, TypeError, ValueError):
            continue  # a file of another version or hand-edited: left out, not fatal
    return out
