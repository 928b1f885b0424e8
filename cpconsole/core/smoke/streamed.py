"""A long command on a node (a bench, an evaluation) read as it runs: its output line by line, then,
after a marker line the script prints when it is done, the result it printed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..remote import ShellTransport


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
