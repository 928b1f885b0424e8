"""Names someone typed that do not exist: one way to say so, with the nearest real name."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


class UsageError(Exception):
    """A command (CLI verb, `:` line, intent) names something the profile does not have or misuses
    a verb: the caller's mistake, said in one line (the CLI exits 2)."""


def did_you_mean(word: str, choices: Sequence[str], what: str) -> str:
    """`did you mean 'x'?` when one choice is close, else `<what>: a, b, c`."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"{what}: {', '.join(choices)}"


def unknown(kind: str, word: str, choices: Sequence[str], plural: str = "") -> UsageError:
    what = f"{plural or kind + 's'} are"
    return UsageError(f"no {kind} named '{word}' ({did_you_mean(word, choices, what)})")


# when set where the exporter runs (`watch --metrics`), a scrape must carry it as a bearer token
METRICS_TOKEN_ENV = "CPCONSOLE_METRICS_TOKEN"
