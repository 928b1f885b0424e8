"""The console's keys by binding id, without Textual: the bindings are made from this table, and
text that names a key (the CLI's help, the board's hints) reads it from here after keymap.yaml's
remaps — so a hint never names a key that no longer does what it says."""

from __future__ import annotations

from collections.abc import Mapping

from .keymap import keymap_path, load_keymap

# binding id → its key as Textual names it; screens' ids are screen.<the `:` word>
DEFAULT_KEYS: Mapping[str, str] = {
    "help": "question_mark",
    "command-line": "colon",
    "screen.board": "1",
    "screen.logs": "2",
    "screen.npus": "3",
    "screen.metrics": "4",
    "screen.plan": "5",
    "screen.prompt": "6",
    "screen.preflight": "7",
    "screen.alerts": "8",
    "screen.ranks": "9",
    "screen.journal": "0",
    "screen.sweep": "w",
    "screen.accuracy": "A",
    "logs-of-row": "l",
    "up": "u",
    "down": "D",
    "restart": "r",
    "apply": "a",
    "bundle": "B",
    "back": "escape",
    "quit": "q",
}

_SHOWN = {"question_mark": "?", "colon": ":", "escape": "esc", "left_square_bracket": "[", "right_square_bracket": "]"}


def shown(key: str) -> str:
    """A key as a person types it: `?`, `:`, `^p` for ctrl+p; the first of several."""
    first = key.split(",")[0].strip()
    if first.startswith("ctrl+"):
        return "^" + first.removeprefix("ctrl+")
    return _SHOWN.get(first, first)


def keys_now(remapped: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every binding id's key: the defaults with keymap.yaml's usable entries over them (what
    cannot be used there the console reports when it starts)."""
    if remapped is None:
        remapped, _ = load_keymap(keymap_path(), DEFAULT_KEYS)
    return {**DEFAULT_KEYS, **{k: v for k, v in remapped.items() if k in DEFAULT_KEYS}}


def console_keys_hint(keys: Mapping[str, str]) -> str:
    """`1 board, 2 logs, …, q quit`: the everyday keys, for the CLI's help."""
    named = [("screen.board", "board"), ("screen.logs", "logs"), ("screen.npus", "NPUs"), ("screen.metrics", "metrics")]
    named += [("screen.plan", "plan"), ("up", "up"), ("down", "down"), ("quit", "quit")]
    return ", ".join(f"{shown(keys[binding_id])} {what}" for binding_id, what in named)
