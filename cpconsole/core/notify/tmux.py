"""A line in the status bar of the tmux the console runs in."""

from __future__ import annotations

import asyncio
import os

from ..safetext import terminal_safe

SHOW_MS = 8000
MAX_CHARS = 300  # a status line; the rest is on the alerts screen


def tmux_argv(text: str, environ: dict[str, str] | None = None) -> list[str] | None:
    """`tmux display-message` of `text`, or None outside tmux. The message is a tmux format, where
    `#(…)` runs a shell command: every `#` is doubled, so log text shows and never runs."""
    env = os.environ if environ is None else environ
    if not env.get("TMUX"):
        return None
    line = terminal_safe(text)[:MAX_CHARS].replace("#", "##")
    return ["tmux", "display-message", "-d", str(SHOW_MS), line]


async def display(text: str) -> str | None:
    """Show it; None when shown, else why not."""
    argv = tmux_argv(text)
    if argv is None:
        return "not inside tmux"
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        return f"tmux: {exc}"
    try:
        _, err = await asyncio.wait_for(process.communicate(), 5)
    except TimeoutError:
        process.kill()
        await process.wait()
        return "tmux: display-message did not return within 5 s"
    return None if process.returncode == 0 else f"tmux: {terminal_safe(err.decode(errors='replace').strip())}"
