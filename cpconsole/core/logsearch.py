"""Searching and filtering log lines, as a log viewer does: a case-insensitive regex (or, if it
does not compile, the literal text), `!` in front to invert a filter, error lines to jump to."""

from __future__ import annotations

import re
from collections.abc import Sequence

ERROR_LINE = re.compile(r"(?:^|\s)(?:ERROR|CRITICAL)\s|Traceback \(most recent call last\)|\w+Error: ")


def compile_query(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error:
        return re.compile(re.escape(text), re.IGNORECASE)


def parse_filter(text: str) -> tuple[re.Pattern[str], bool] | None:
    """`pattern` keeps matching lines, `!pattern` keeps the others; empty clears the filter."""
    invert = text.startswith("!")
    body = text[1:] if invert else text
    return (compile_query(body), invert) if body else None


def keep(line: str, rule: tuple[re.Pattern[str], bool] | None) -> bool:
    if rule is None:
        return True
    pattern, invert = rule
    return bool(pattern.search(line)) != invert


def find(lines: Sequence[str], pattern: re.Pattern[str]) -> list[int]:
    return [index for index, line in enumerate(lines) if pattern.search(line)]


def step(matches: Sequence[int], current: int, direction: int) -> int | None:
    """The next match after (or before) line `current`, wrapping around; None without matches."""
    if not matches:
        return None
    if direction > 0:
        return next((m for m in matches if m > current), matches[0])
    return next((m for m in reversed(matches) if m < current), matches[-1])
