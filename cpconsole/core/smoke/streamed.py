"""A long command on a node (a bench, an evaluation) read as it runs: its output line by line, then,
after a marker line the script prints when it is done, the result it printed; and the API key it
needs handed over on stdin into a file of its directory, which its script reads once and deletes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..remote import RemoteError, ShellTransport
from ..remote.scripts import hand_key
from ..render import KEY_FILE

# the script's first step when a key was handed over: into $OPENAI_API_KEY, the file gone
TAKE_KEY = f"OPENAI_API_KEY=$(cat {KEY_FILE}) && rm -f {KEY_FILE} && export OPENAI_API_KEY || exit 97\n"


@dataclass(frozen=True)
class Marked:
    """What followed the marker line (None: the script never printed it)."""

    after: bytes | None


async def lines_then_marked(transport: ShellTransport, script: str, mark: str) -> AsyncIterator[str | Marked]:
    """The script's lines as they come (a carriage return ends a line too: progress bars), then
    one Marked."""
    stream = await transport.open_stream(script)
    partial, result = b"", None
    try:
        while chunk := await stream.read():
            if result is not None:
                result += chunk
                continue
            partial += chunk
            *lines, partial = re.split(rb"\r?\n|\r", partial)
            for index, line in enumerate(lines):
                if line == mark.encode():  # the rest is the result
                    result = b"\n".join(lines[index + 1 :]) + b"\n" + partial
                    break
                yield line.decode("utf-8", "replace")
    finally:
        await stream.close()
    if result is None and partial:
        yield partial.decode("utf-8", "replace")
    yield Marked(result)


async def hand_over_key(transport: ShellTransport, directory: str, api_key: str, to: str) -> None:
    """The key on stdin into KEY_FILE in `directory`, readable by its user only: never on a command line."""
    handed = await transport.run(hand_key(directory, KEY_FILE), input=api_key.encode(), timeout=20)
    if not handed.ok:
        raise RemoteError(transport.node, f"cannot hand {to} the API key: {handed.text().strip()[-200:]}")
