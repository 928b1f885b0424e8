"""A bounded log of one process: the lines the UI and CLI read, fed by a tail.

Lines are kept as plain strings in a ring (a deque with maxlen), numbered by a running
sequence so readers can ask for "everything after line N" and see what they missed.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from dataclasses import dataclass

from .base import Transport
from .types import TailChunk, TailEvent, TailItem

MAX_PARTIAL = 1 << 20  # a "line" this long without a newline is cut into a line of its own
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # vLLM colours its log prefixes even in files


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


@dataclass(frozen=True)
class StoreEvent:
    seq: int  # the sequence number of the next line at the time of the event
    event: TailEvent


def _split(text: str) -> list[str]:
    lines = text.split("\n")
    if "\r" in text:  # progress bars redraw with \r: keep what a terminal would show
        lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines]
    return lines


class LogStore:
    def __init__(self, max_lines: int = 100_000, max_events: int = 1000) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._partial = b""
        self.total = 0
        """Complete lines ever stored; the next line gets this sequence number."""
        self.offset = 0
        """Byte offset in the followed file just after the last byte stored: where to resume."""
        self.events: deque[StoreEvent] = deque(maxlen=max_events)

    @property
    def max_lines(self) -> int:
        return self._lines.maxlen or 0

    @property
    def dropped(self) -> int:
        """Lines that fell out of the ring."""
        return self.total - len(self._lines)

    @property
    def disconnected(self) -> TailEvent | None:
        """The tail's "disconnected" notice while it has not resumed yet, else None."""
        for stored in reversed(self.events):
            if stored.event.kind in ("disconnected", "resumed"):
                return stored.event if stored.event.kind == "disconnected" else None
        return None

    @property
    def first_seq(self) -> int:
        return self.total - len(self._lines)

    @property
    def partial(self) -> str:
        """The unfinished last line as a terminal would show it (e.g. a progress bar)."""
        return _split(self._partial.decode("utf-8", "replace"))[-1]

    def feed(self, item: TailItem) -> int:
        """Store a tail item; answer how many complete lines it added."""
        if isinstance(item, TailEvent):
            if item.kind in ("truncated", "rotated"):
                added = self._flush_partial()
                self.offset = 0
            else:
                added = 0
            self.events.append(StoreEvent(self.total, item))
            return added
        return self._add(item)

    def _add(self, chunk: TailChunk) -> int:
        self.offset = chunk.offset + len(chunk.data)
        buffer = self._partial + chunk.data
        cut = buffer.rfind(b"\n")
        if cut == -1:
            self._partial = buffer
            return self._flush_partial() if len(buffer) > MAX_PARTIAL else 0
        self._partial = buffer[cut + 1 :]
        lines = _split(buffer[:cut].decode("utf-8", "replace"))
        self._lines.extend(lines)
        self.total += len(lines)
        return len(lines)

    def _flush_partial(self) -> int:
        if not self._partial:
            return 0
        self._lines.append(_split(self._partial.decode("utf-8", "replace"))[-1])
        self._partial = b""
        self.total += 1
        return 1

    def since(self, seq: int) -> tuple[int, list[str]]:
        """Lines numbered seq and later still held; also the number of the first one returned
        (larger than seq when lines were dropped in between)."""
        start = max(seq, self.first_seq)
        skip = start - self.first_seq
        if skip >= len(self._lines):
            return self.total, []
        return start, self.last(len(self._lines) - skip)

    def last(self, count: int) -> list[str]:
        """The newest `count` lines, oldest first (walks from the right end of the ring)."""
        count = min(count, len(self._lines))
        newest = list(itertools.islice(reversed(self._lines), count))
        newest.reverse()
        return newest


async def follow(transport: Transport, path: str, store: LogStore) -> None:
    """Feed a store from a tail of `path`, resuming at the store's offset; runs until cancelled."""
    async for item in transport.tail(path, store.offset):
        store.feed(item)
