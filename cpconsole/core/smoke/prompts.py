"""Prompts worth sending: a hello, and the long-context needle — one line `The passphrase is …`
hidden at a chosen depth in varied filler, asked for at the end. Only a service that really read
the whole prompt answers with the passphrase."""

from __future__ import annotations

import random
from dataclasses import dataclass

SUBJECTS = (
    "The cluster",
    "A prefill node",
    "The decode instance",
    "An operator",
    "The proxy",
    "Each rank",
    "The scheduler",
    "A long request",
    "The KV cache",
    "Every chip",
)
VERBS = ("reported", "measured", "balanced", "streamed", "checked", "recorded", "moved", "compared")
OBJECTS = (
    "the latency of the morning batch",
    "twelve blocks of attention state",
    "a quiet queue",
    "the temperature of the third card",
    "an unusual spike in throughput",
    "the weights of layer seven",
    "a handshake on port thirty",
    "the load of the afternoon",
)
PASS_WORDS = (
    "amber",
    "falcon",
    "river",
    "granite",
    "velvet",
    "orbit",
    "cedar",
    "lantern",
    "harbor",
    "meadow",
    "copper",
    "willow",
    "summit",
    "ember",
    "quartz",
    "tundra",
)
HELLO = "Hello! Please introduce yourself in one sentence."
QUESTION = "\n\nWhat is the passphrase mentioned in the text above? Answer with the passphrase only."
TOKENS_PER_SENTENCE = 12  # rough, for sizing; the server's /tokenize says the real count


@dataclass(frozen=True)
class Needle:
    prompt: str
    passphrase: str
    depth: float

    def passed(self, answer: str) -> bool:
        return self.passphrase.lower() in answer.lower()


def needle_prompt(tokens: int, depth: float = 0.5, seed: int = 0) -> Needle:
    """About `tokens` tokens of filler with the passphrase at `depth` (0 = start, 1 = end)."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError("depth is a fraction between 0 and 1")
    rng = random.Random(seed)
    passphrase = " ".join(rng.sample(PASS_WORDS, 3))
    sentences = filler(tokens, rng)
    at = round(depth * len(sentences))
    sentences.insert(at, f"The passphrase is {passphrase}.")
    return Needle(" ".join(sentences) + QUESTION, passphrase, depth)


def filler(tokens: int, rng: random.Random) -> list[str]:
    """About `tokens` tokens of varied, meaningless sentences."""
    count = max(1, tokens // TOKENS_PER_SENTENCE)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} on day {n + 1}." for n in range(count)]
