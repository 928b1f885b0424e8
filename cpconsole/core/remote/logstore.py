"""A bounded log of one process: the lines the UI and CLI read, fed by a tail.

Lines are kept as plain strings in a ring bounded in lines and in characters (3,000 lines of
64 KiB cost as much as millions of short ones), numbered by a running sequence so readers can ask
for "everything after line N" and see what they missed.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from ..safetext import terminal_safe
from .base import Transport
from .types import TailEvent, TailItem

MAX_LINE = 64 << 10  # bytes of one line that are kept; the rest is cut (and said so)


def cut_note(dropped: int) -> bytes:
    return f" … [{dropped} more bytes of this line not shown]".encode()


@dataclass(frozen=True)
class StoreEvent:
    seq: int  # the sequence number of the next line at the time of the event
    event: TailEvent


def _show(line: bytes) -> str:
    """One line as a terminal may show it: progress bars redraw with \r (keep what a terminal
    would show), and nothing in it may act on the terminal."""
    text = line.decode("utf-8", "replace")
    if "\r" in text:
        text = text.rstrip("\r").rsplit("\r", 1)[-1]
    return terminal_safe(text)


class Lines:
    """Bytes in, whole lines out as a terminal may show them (see _show), each at most MAX_LINE
    bytes of its head: a line that never ends costs no more memory or copying than that."""

    def __init__(self) -> None:
        self._partial = bytearray()  # the unfinished last line, at most MAX_LINE bytes of it
        self._partial_dropped = 0  # what of it was past MAX_LINE

    @property
    def partial(self) -> str:
        return _show(bytes(self._partial))

    def feed(self, data: bytes) -> list[str]:
        pieces = data.split(b"\n")
        lines = []
        for piece in pieces[:-1]:
            self._grow(piece)
            lines.append(self._end())
        self._grow(pieces[-1])
        return lines

    def flush(self) -> str | None:
        """The unfinished line as a line of its own, if there is one."""
        return self._end() if self._partial or self._partial_dropped else None

    def _grow(self, data: bytes) -> None:
        room = MAX_LINE - len(self._partial)
        self._partial += data[:room] if room > 0 else b""
        self._partial_dropped += max(0, len(data) - max(room, 0))

    def _end(self) -> str:
        line = bytes(self._partial) + (cut_note(self._partial_dropped) if self._partial_dropped else b"")
        self._partial.clear()
        self._partial_dropped = 0
        return _show(line)


class LogStore:
    def __init__(self, max_lines: int = 100_000, max_events: int = 1000, max_chars: int = 16 << 20) -> None:
        self._lines: deque[str] = deque()
        self._max_lines = max_lines
        self._max_chars = max_chars
        self._chars = 0  # of the lines held
        self._assembler = Lines()
        self.total = 0
        """Complete lines ever stored; the next line gets this sequence number."""
        self.offset = 0
        """Byte offset in the followed file just after the last byte stored: where to resume."""
        self.events: deque[StoreEvent] = deque(maxlen=max_events)

    @property
    def max_lines(self) -> int:
        return self._max_lines

    @property
    def max_chars(self) -> int:
        return self._max_chars

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
        return self._assembler.partial

    def feed(self, item: TailItem) -> int:
        """Store a tail item; answer how many complete lines it added."""
        if isinstance(item, TailEvent):
            lines = []
            if item.kind in ("truncated", "rotated"):
                last = self._assembler.flush()
                lines = [last] if last is not None else []
                self.offset = 0
            self._store(lines)
            self.events.append(StoreEvent(self.total, item))
            return len(lines)
        self.offset = item.offset + len(item.data)
        return self._store(self._assembler.feed(item.data))

    def _store(self, lines: list[str]) -> int:
        held = self._lines
        held.extend(lines)
        self._chars += sum(map(len, lines))
        self.total += len(lines)
        while len(held) > self._max_lines or (self._chars > self._max_chars and len(held) > 1):
            self._chars -= len(held.popleft())  # the oldest go first: `dropped` counts them
        return len(lines)

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
