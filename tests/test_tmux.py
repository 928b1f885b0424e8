"""The console in a real terminal multiplexer, as operators run it: tmux at 120×40 with
TERM=tmux-256color, driven with send-keys and read back with capture-pane."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .simcluster import demo_text

Tmux = Callable[..., str]


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    """A tmux server of this test's own (its socket name is unique), killed afterwards."""
    socket_name = f"cpconsole-test-{uuid.uuid4().hex[:12]}"

    def run(*args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(["tmux", "-L", socket_name, *args], check=True, capture_output=True, text=True, env=env)
        return done.stdout

    yield run
    subprocess.run(["tmux", "-L", socket_name, "kill-server"], capture_output=True)


def pane_until(tmux: Tmux, condition: Callable[[str], bool], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = tmux("capture-pane", "-p", "-t", "console")
        if condition(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"the pane never showed it; last capture:\n{text}")


def test_the_board_reads_right_in_tmux_and_q_quits(tmp_path: Path, tmux: Tmux) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    command = f"{sys.executable} -m cpconsole {profile} --read-only; echo exited $? > {tmp_path}/rc; sleep 30"
    env = {**os.environ, "TERM": "tmux-256color"}
    tmux("-f", "/dev/null", "new-session", "-d", "-s", "console", "-x", "120", "-y", "40", command, env=env)
    board = pane_until(tmux, lambda t: "decode-0" in t and "NODES" in t)
    assert "P 0/2" in board and "D 0/1" in board and "proxy ✗" in board
    rows = [
        row
        for line in board.splitlines()
        if (row := line.strip()).startswith(("prefill-0 ", "prefill-1 ", "decode-0 ", "proxy "))
    ]
    assert [row.split()[:2] for row in rows] == [
        ["prefill-0", "prefill"],
        ["prefill-1", "prefill"],
        ["decode-0", "decode"],
        ["proxy", "proxy"],
    ]
    assert all("planned" in row for row in rows)
    assert "demo  [read-only]" in board
    tmux("send-keys", "-t", "console", "u")  # refused: read-only
    pane_until(tmux, lambda t: "read-only console" in t)
    tmux("send-keys", "-t", "console", "3")
    pane_until(tmux, lambda t: "NPU/chip" in t)  # the NPU screen, from the sim's npu-smi
    tmux("send-keys", "-t", "console", "q")
    for _ in range(100):
        if (tmp_path / "rc").exists():
            break
        time.sleep(0.1)
    assert (tmp_path / "rc").read_text().strip() == "exited 0"


def test_keys_typed_at_the_first_paint_land_where_the_focus_is(tmp_path: Path, tmux: Tmux) -> None:
    """The command line typed the moment the board first shows (adoption still asking the
    nodes, the first refreshes landing): every key reaches it, and Enter runs it."""
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    command = f"{sys.executable} -m cpconsole {profile} --read-only; sleep 30"
    env = {**os.environ, "TERM": "tmux-256color"}
    tmux("-f", "/dev/null", "new-session", "-d", "-s", "console", "-x", "120", "-y", "40", command, env=env)
    pane_until(tmux, lambda t: "decode-0" in t, timeout=30)
    tmux("send-keys", "-t", "console", ":", "h", "e", "l", "p", "Enter")
    pane_until(tmux, lambda t: "Board — keys" in t)  # the help screen: all five keys arrived
    tmux("send-keys", "-t", "console", "Escape", "q")


SCREENS_BY_KEY = {
    "2": "logs: all processes",
    "3": "NPU/chip",
    "4": "KV cache",
    "5": "prefill-0  (prefill on",
    "6": "max tokens",
    "7": "not run yet",
    "8": "no alerts",
    "9": "ranks)",
    "0": "no action recorded yet",
    "w": "no sweep of this profile yet",
}


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
def test_every_screen_at_80_and_160_columns_ends_its_footer_at_the_edge(
    tmp_path: Path, tmux: Tmux, size: tuple[int, int]
) -> None:
    """Switching through every screen: the footer ends with the palette key in the last column.
    Textual's compact footer gave the palette key a right margin, and the keys that did not fit
    showed through in that column (`^p palettet`, `^p paletteh`). (The `▂▂`/`▇▇` seen at the
    right edge of long screens are their scrollbars' thumb ends, drawn by the screen itself.)"""
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    command = f"{sys.executable} -m cpconsole {profile} --read-only; sleep 30"
    env = {**os.environ, "TERM": "tmux-256color"}
    width, height = size
    tmux("-f", "/dev/null", "new-session", "-d", "-s", "console", "-x", str(width), "-y", str(height), command, env=env)
    pane_until(tmux, lambda t: "decode-0" in t and "NODES" in t, timeout=30)
    for key, marker in SCREENS_BY_KEY.items():
        tmux("send-keys", "-t", "console", key)
        # the screen is there, footer and all (it paints in parts)
        shown = pane_until(tmux, lambda t, marker=marker: marker in t and "palette" in t.split("\n")[height - 1])  # type: ignore[misc]
        footer = shown.split("\n")[height - 1].rstrip()
        assert footer.endswith("▏^p palette"), (key, footer)
        assert len(footer) == width, (key, footer)  # right to the edge: no column left over
        # back to the board: the prompt pane takes typed keys, so escape from it first
        tmux("send-keys", "-t", "console", *(["Escape"] if key == "6" else ["1"]))
        pane_until(tmux, lambda t: "NODES" in t)
