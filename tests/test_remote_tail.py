"""Gap-free tails: offsets, truncation, rotation, reconnects after sshd dies mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from cpconsole.core.remote import LogStore, ShellTransport, SSHTransport, TailChunk, TailEvent, follow, scripts
from cpconsole.core.remote.tailing import NoticeSplitter

from .sshd import Sshd


async def collect(
    items: AsyncIterator[object], until: Callable[[list[object]], bool], timeout: float = 10
) -> list[object]:
    seen: list[object] = []

    async def run() -> None:
        async for item in items:
            seen.append(item)
            if until(seen):
                return

    await asyncio.wait_for(run(), timeout)
    return seen


def data_of(items: list[object]) -> bytes:
    return b"".join(i.data for i in items if isinstance(i, TailChunk))


async def test_tail_from_offset_then_follow(transport: ShellTransport, nodes_dir: str) -> None:
    log = Path(nodes_dir, "log")
    log.write_bytes(b"0123456789\n")
    items = transport.tail(str(log), from_offset=4)
    seen: list[object] = []

    async def append_later() -> None:
        await asyncio.sleep(0.3)
        with log.open("ab") as f:
            f.write(b"more\n")

    writer = asyncio.create_task(append_later())
    seen = await collect(items, lambda s: data_of(s).endswith(b"more\n"))
    await writer
    await items.aclose()  # type: ignore[attr-defined]
    chunks = [i for i in seen if isinstance(i, TailChunk)]
    assert chunks[0].offset == 4
    assert data_of(seen) == b"456789\nmore\n"


async def test_a_log_slice_is_one_consistent_read(transport: ShellTransport, nodes_dir: str) -> None:
    log = Path(nodes_dir, "odd name's log")
    log.write_bytes(b"one\ntwo\nthree\n\x00\xffbytes\n")

    async def slice_of(**how: int) -> tuple[int, int, bytes]:
        answer = await transport.run(scripts.log_slice(str(log), **how))
        assert answer.ok, answer.stderr
        return scripts.parse_log_slice(answer.stdout)

    assert await slice_of(offset=4) == (22, 4, b"two\nthree\n\x00\xffbytes\n")  # bytes as they are
    assert await slice_of(offset=22) == (22, 22, b"")
    assert await slice_of(offset=99) == (22, 0, log.read_bytes())  # shorter now: from the start
    assert await slice_of(lines=2) == (22, 0, b"three\n\x00\xffbytes\n")
    log.write_bytes(b"x" * (scripts.LOG_WINDOW + 10) + b"\nlast\n")
    size, start, data = await slice_of(lines=1)
    assert (size, start, data) == (scripts.LOG_WINDOW + 16, 16, b"last\n")  # only the window was read
    assert not (await transport.run(scripts.log_slice(str(log) + ".missing"))).ok


async def test_truncation_is_reported_and_reading_continues(transport: ShellTransport, nodes_dir: str) -> None:
    log = Path(nodes_dir, "log")
    log.write_bytes(b"a long first line that will be truncated\n")
    items = transport.tail(str(log))
    seen = await collect(items, lambda s: data_of(s).endswith(b"truncated\n"))
    await asyncio.sleep(0.2)
    log.write_bytes(b"new\n")  # truncate and write: shorter than before
    seen += await collect(items, lambda s: data_of(s).endswith(b"new\n"))
    await items.aclose()  # type: ignore[attr-defined]
    kinds = [i.kind for i in seen if isinstance(i, TailEvent)]
    assert "truncated" in kinds
    after = seen[[isinstance(i, TailEvent) and i.kind == "truncated" for i in seen].index(True) + 1 :]
    assert data_of(after) == b"new\n" and isinstance(after[0], TailChunk) and after[0].offset == 0


async def test_rotation_is_reported_and_the_new_file_followed(transport: ShellTransport, nodes_dir: str) -> None:
    log = Path(nodes_dir, "log")
    log.write_bytes(b"old 1\n")
    items = transport.tail(str(log))
    seen = await collect(items, lambda s: data_of(s) == b"old 1\n")
    await asyncio.sleep(0.2)
    with log.open("ab") as f:
        f.write(b"old 2\n")
    log.rename(Path(nodes_dir, "log.1"))
    Path(nodes_dir, "log").write_bytes(b"fresh 1\n")
    seen += await collect(items, lambda s: data_of(s).endswith(b"fresh 1\n"))
    await items.aclose()  # type: ignore[attr-defined]
    kinds = [i.kind for i in seen if isinstance(i, TailEvent)]
    assert kinds[-1] == "rotated" and set(kinds) <= {"missing", "rotated"}  # tail may see the gap between
    text = data_of(seen)
    assert text.endswith(b"fresh 1\n") and text.startswith(b"old 1\n")


async def test_store_keeps_lines_split_across_chunks_and_counts_drops() -> None:
    store = LogStore(max_lines=3)
    assert store.feed(TailChunk(0, b"one\ntw")) == 1
    assert store.partial == "tw"
    assert store.feed(TailChunk(6, b"o\nthr\xffee\nfour\nfive")) == 3
    assert store.last(10) == ["two", "thr\ufffdee", "four"]
    assert (store.total, store.dropped, store.offset) == (4, 1, 24)
    assert store.since(0) == (1, ["two", "thr\ufffdee", "four"])
    assert store.since(3) == (3, ["four"])
    assert store.since(4) == (4, [])
    store.feed(TailEvent("truncated"))
    assert store.last(1) == ["five"] and store.offset == 0  # the cut-off line is kept
    assert store.events[-1].seq == 5


def test_store_is_bounded_in_characters_too() -> None:
    """Long lines (a NUL flood: each 64 KiB, shown as ␀) fill the characters long before the line
    count: the oldest go, counted as dropped."""
    store = LogStore(max_lines=100_000, max_chars=1 << 20)
    flood = b"\0" * (64 << 10) + b"\n"
    offset = 0
    for _ in range(3000):
        store.feed(TailChunk(offset, flood))
        offset += len(flood)
    held = store.last(100_000)
    assert sum(map(len, held)) <= 1 << 20 and len(held) == 16
    assert store.dropped == 3000 - 16 and store.total == 3000
    store.feed(TailChunk(offset, b"short\n"))
    assert store.last(1) == ["short"]


def test_store_shows_progress_bars_as_a_terminal_would() -> None:
    store = LogStore()
    store.feed(TailChunk(0, b"Loading: 10%\rLoading: 50%\r"))
    assert store.partial == "Loading: 50%"
    store.feed(TailChunk(28, b"Loading: 100%\r\nnext\r\n"))
    assert store.last(2) == ["Loading: 100%", "next"]


def test_notice_splitter_separates_notices_split_across_chunks() -> None:
    splitter = NoticeSplitter("log")
    message = b"tail: log: file truncated\n"
    stream = b"line 1\nhalf" + message + b"line 2\n"
    for cut in range(1, len(stream)):
        parts = splitter.feed(stream[:cut]) + splitter.feed(stream[cut:])
        data = b"".join(p for p in parts if isinstance(p, bytes)) + splitter.flush()
        notices = [p.kind for p in parts if not isinstance(p, bytes)]
        assert (data, notices) == (b"line 1\nhalfline 2\n", ["truncated"]), cut
    assert splitter.feed(b"a tail: in a log line\n") == [b"a tail: in a log line\n"]
    assert [getattr(p, "kind", p) for p in splitter.feed(b"tail: 'log' has been replaced;  following new file\n")] == [
        "rotated"
    ]


async def test_tail_resumes_without_gap_or_duplicate_across_an_sshd_restart(sshd: Sshd, nodes_dir: str) -> None:
    """100k lines are written while the sshd (and every session) is killed and restarted."""
    lines = 100_000
    path = posixpath.join(nodes_dir, "big.log")
    Path(path).touch()
    os.chmod(path, 0o644)
    node = SSHTransport(sshd.node(sshd.ips[1], run_dir=nodes_dir), connect_timeout=3)
    store = LogStore(max_lines=lines + 10)
    follower = asyncio.create_task(follow(node, path, store))

    async def write() -> None:
        with open(path, "ab", buffering=0) as f:
            for start in range(0, lines, 1000):
                f.write(b"".join(b"line %06d of the log\n" % i for i in range(start, start + 1000)))
                await asyncio.sleep(0.002)

    try:
        writer = asyncio.create_task(write())
        while store.total < 20_000:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(sshd.restart)
        await writer
        for _ in range(600):
            if store.total >= lines:
                break
            await asyncio.sleep(0.05)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await node.close()
    kinds = [e.event.kind for e in store.events]
    assert "disconnected" in kinds and "resumed" in kinds
    assert store.total == lines
    assert store.last(lines) == [f"line {i:06d} of the log" for i in range(lines)]
