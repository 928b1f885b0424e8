"""The README's screenshots (made from the running app by scripts/screenshots.py) are one per
screen: no two alike, and each shows what its screen is about."""

from __future__ import annotations

import html
import itertools
import re

import pytest

from .conftest import ROOT

SHOTS = ROOT / "screenshots"
# what each screen shows and no other does (the board is under dialogs, so its marker is its table)
MARKERS = {
    "board": "why / last line",
    "logs": "logs: all processes",
    "npus": "NPU/chip phy health HBM used/total MB",
    "metrics": "server run wait KV cache prompt tok/s",
    "plan": "#!/bin/sh",
    "prompt": "── proxy ─ 'In one sentence, what is context parallelism?'",
    "alerts": "source alert state",
    "ranks": "what its lines say",
    "journal": "at (UTC) who via",
    "sweep": "length ok TTFT prefill hand-off TPOT guide",
    "accuracy": "dataset samples accuracy through",
    "details": "progress HTTP up ports http",
    "help": "Board — keys",
    "confirm": "Stop every process of this deployment?",
    "preflight": "passed ·",
    "preflight-offer": "Check every node before starting?",
    "picker": "profile name nodes processes state",
}


def shown_text(name: str) -> str:
    """The characters an SVG screenshot of Textual shows, spaces folded, box drawing as |."""
    svg = (SHOTS / f"{name}.svg").read_text()
    text = html.unescape("".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg)))
    return re.sub(r"[█▀▄▔▁▊▎▏]+", "|", " ".join(text.split()))


def test_every_screenshot_is_there_and_none_is_another() -> None:
    assert {p.stem for p in SHOTS.glob("*.svg")} == set(MARKERS)
    for a, b in itertools.combinations(sorted(MARKERS), 2):
        assert (SHOTS / f"{a}.svg").read_bytes() != (SHOTS / f"{b}.svg").read_bytes(), (a, b)


@pytest.mark.parametrize("name", sorted(MARKERS))
def test_each_screenshot_shows_its_screen(name: str) -> None:
    text = shown_text(name)
    assert MARKERS[name] in text, text[:300]
    if name not in ("board", "confirm", "help", "preflight-offer"):  # dialogs are shown over the board
        assert MARKERS["board"] not in text


def test_the_alert_history_shows_a_failure_with_where_and_what_to_do() -> None:
    """The README's "When something breaks": a real failure line replayed on the demo's decode."""
    text = shown_text("alerts")
    assert "the KV transfer could not connect to its peer" in text
    assert "where decode-a · peer prefill-a (127.0.0.11:" in text and "ASCEND_CONNECT_TIMEOUT" in text
