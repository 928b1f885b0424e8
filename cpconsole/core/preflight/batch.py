"""Many commands in one round trip to a node: run side by side, their outputs read back apart."""

from __future__ import annotations

import re


def all_at_once(commands: list[str]) -> str:
    """sh running the commands in parallel, then printing each one's output (stdout and stderr)
    whole, in order, after a `@N` line: parallel writers to one pipe would interleave."""
    runs = "".join(f'( {command} ) >"$d/{n}" 2>&1 &\n' for n, command in enumerate(commands))
    # the echo after each output: a last line without its newline must not swallow the next "@N"
    shows = f'for n in $(seq 0 {len(commands) - 1}); do echo "@$n"; cat "$d/$n"; echo; done\n' if commands else ""
    return f'd=$(mktemp -d) || exit 1\n{runs}wait\n{shows}rm -rf "$d"\n'


def answers(text: str) -> dict[int, str]:
    """The outputs of `all_at_once`, by command number."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^@(\d+)\n(.*?)(?=^@\d+\n|\Z)", text, re.S | re.M)}
