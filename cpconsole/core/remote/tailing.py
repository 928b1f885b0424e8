"""Following a log file without gaps: byte offsets, tail's own notices, reconnects."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

NoticeKind = Literal["truncated", "rotated", "missing", "other"]


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    text: str


def _notice_pattern(name: str) -> re.Pattern[bytes]:
    n = re.escape(name.encode())
    return re.compile(rb"tail: (?:'?" + n + rb"'?: |'" + n + rb"' has |cannot open '" + n + rb"' |inotify )[^\n]*\n")


def _classify(text: bytes) -> NoticeKind:
    if b"file truncated" in text:
        return "truncated"
    if b"has been replaced" in text or b"has appeared" in text:
        return "rotated"
    if b"inaccessible" in text or b"cannot open" in text:
        return "missing"
    return "other"


MARK = b"tail: "


@dataclass
class NoticeSplitter:
    """Separates GNU tail's notices (merged into stdout with 2>&1) from the file's bytes.

    Bytes that might be the start of a notice are held until the next chunk decides.
    """

    name: str
    _pattern: re.Pattern[bytes] = field(init=False)
    _held: bytes = b""

    def __post_init__(self) -> None:
        self._pattern = _notice_pattern(self.name)

    def feed(self, data: bytes) -> list[bytes | Notice]:
        buf = self._held + data
        self._held = b""
        out: list[bytes | Notice] = []
        start = 0
        for match in self._pattern.finditer(buf):
            if match.start() > start:
                out.append(buf[start : match.start()])
            out.append(Notice(_classify(match.group()), match.group().decode("utf-8", "replace").strip()))
            start = match.end()
        rest = buf[start:]
        hold_from = self._hold_point(rest)
        if hold_from < len(rest):
            self._held = rest[hold_from:]
            rest = rest[:hold_from]
        if rest:
            out.append(rest)
        return out

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held

    @staticmethod
    def _hold_point(rest: bytes) -> int:
        """Where a possibly unfinished notice starts in `rest` (len(rest) if nowhere)."""
        index = rest.rfind(MARK)
        if index != -1 and b"\n" not in rest[index:]:
            return index
        for size in range(min(len(MARK) - 1, len(rest)), 0, -1):
            if rest.endswith(MARK[:size]):
                return len(rest) - size
        return len(rest)


@dataclass
class Backoff:
    """Exponential backoff between reconnects: first, first·2, … up to ceiling."""

    first: float = 0.2
    ceiling: float = 10.0
    _next: float = 0.0

    def next(self) -> float:
        self._next = self.first if self._next == 0 else min(self._next * 2, self.ceiling)
        return self._next

    def reset(self) -> None:
        self._next = 0.0
