"""Prompts sent from the console and what came back, kept across runs: one JSON line per request in
$XDG_STATE_HOME/cpconsole/prompts.jsonl, exportable as Markdown for an incident write-up."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import RequestResult, percentile


def state_dir() -> Path:
    """$XDG_STATE_HOME/cpconsole (default ~/.local/state/cpconsole): history that outlives a console."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "cpconsole"


@dataclass(frozen=True)
class PromptRecord:
    at: str  # ISO time the request was sent
    profile: str
    target: str
    prompt: str
    max_tokens: int
    temperature: float
    answer: str
    error: str | None
    request_id: str
    prompt_tokens: int | None
    output_tokens: int | None
    ttft_s: float | None
    tpot_s: float | None
    itl_p50_s: float | None
    itl_p99_s: float | None
    e2e_s: float | None
    tokens_per_s: float | None

    @classmethod
    def of(
        cls, at: str, profile: str, target: str, prompt: str, max_tokens: int, temperature: float, r: RequestResult
    ) -> PromptRecord:
        return cls(
            at,
            profile,
            target,
            prompt,
            max_tokens,
            temperature,
            r.text,
            r.error,
            r.request_id,
            r.prompt_tokens,
            r.output_tokens,
            r.ttft_s,
            r.tpot_s,
            percentile(r.itl_s, 0.5),
            percentile(r.itl_s, 0.99),
            r.e2e_s,
            r.tokens_per_s,
        )

    def stats(self) -> str:
        """The line under an answer: TTFT, TPOT, ITL p50/p99, tokens, tok/s, E2E."""
        if self.error:
            return f"error: {self.error}"
        return (
            f"TTFT {_ms(self.ttft_s)}  TPOT {_ms(self.tpot_s)}  ITL p50 {_ms(self.itl_p50_s)} p99 {_ms(self.itl_p99_s)}"
            f"  {self.prompt_tokens if self.prompt_tokens is not None else '?'} → {self.output_tokens or 0} tokens"
            f"  {self.tokens_per_s or 0:.1f} tok/s  E2E {_ms(self.e2e_s)}"
        )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


class History:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "prompts.jsonl"

    def append(self, record: PromptRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(dataclasses.asdict(record), ensure_ascii=False) + "\n")

    def load(self, profile: str | None = None, limit: int = 200) -> list[PromptRecord]:
        """The newest `limit` records (of one profile, if given), oldest first; damaged lines are skipped."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        names = {f.name for f in dataclasses.fields(PromptRecord)}
        records = []
        for line in lines:
            try:
                data: dict[str, Any] = json.loads(line)
                record = PromptRecord(**{k: v for k, v in data.items() if k in names})
            except (ValueError, TypeError):
                continue
            if profile is None or record.profile == profile:
                records.append(record)
        return records[-limit:]


def to_markdown(records: list[PromptRecord]) -> str:
    out = ["# cpconsole prompts", ""]
    for r in records:
        out += [
            f"## {r.at} — {r.target} ({r.profile})",
            "",
            f"`{r.request_id}` · max_tokens {r.max_tokens} · temperature {r.temperature:g}",
            "",
            "**Prompt**",
            "",
            "```text",
            r.prompt,
            "```",
            "",
            "**Answer**",
            "",
            "```text",
            r.answer if not r.error else f"(error) {r.error}",
            "```",
            "",
            f"_{r.stats()}_",
            "",
        ]
    return "\n".join(out)
