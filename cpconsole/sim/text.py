"""Tokens and text for the simulator: a deterministic word-level tokenizer, seeded filler,
and the needle rule (the passphrase comes back only from a prompt the model could read)."""

from __future__ import annotations

import hashlib
import random
import re

TOKEN_RE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+$")
PASSPHRASE_RE = re.compile(r"The passphrase is ([^.\n]+)\.")
WORDS = (
    "the of and to in is that for it as with was on be by this are from at or which an have not they has "
    "their more one can all also been other into its these than only two some time would new first may "
    "cache prefill decode token tensor parallel context rank node chip memory block transfer engine model "
    "request stream latency throughput expert layer attention kernel graph batch sequence length"
).split()


def tokenize(text: str) -> list[str]:
    """Words and punctuation with their leading space; "".join(tokens) == text."""
    return TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(tokenize(text))


def chat_prompt(messages: list[dict[str, object]]) -> str:
    parts = []
    for message in messages:
        content = message.get("content", "")
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        parts.append(f"{message.get('role', 'user')}: {content}\n")
    return "".join(parts) + "assistant:"


def answer_tokens(prompt: str, seed: int, max_tokens: int) -> tuple[list[str], str]:
    """The tokens to generate and the finish reason ("stop" or "length")."""
    needle = PASSPHRASE_RE.search(prompt)
    if needle and "passphrase" in prompt[needle.end() :].lower():  # stated, then asked for
        tokens = tokenize(f" The passphrase is {needle.group(1).strip()}.")
        return (tokens[:max_tokens], "stop" if len(tokens) <= max_tokens else "length")
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    rng = random.Random(digest)
    return [" " + rng.choice(WORDS) for _ in range(max_tokens)], "length"
