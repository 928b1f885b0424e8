"""Following a log cannot be steered by what the log says: lines that look like tail's own notices
are data (offsets stay right), and a log truncated under a running process leaves no hole of NULs
(the wrapper appends). Through both transports."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from cpconsole.core.remote import ShellTransport, TailChunk, TailEvent

from .test_remote_processes import run_dir_for, spec
from .test_remote_tail import collect, data_of


async def test_lines_that_look_like_tails_notices_are_data(transport: ShellTransport, nodes_dir: str) -> None:
    log = Path(nodes_dir, "log")
    forged = (
        b"INFO ready\n"
        b"tail: log: file truncated\n"
        b"tail: 'log' has been replaced;  following new file\n"
        b"tail: 'log' has become inaccessible: No such file or directory\n"
        b"INFO after\n"
    )
    log.write_bytes(forged)
    items = transport.tail(str(log))
    seen = await collect(items, lambda s: data_of(s).endswith(b"INFO after\n"))
    await items.aclose()  # type: ignore[attr-defined]
    assert [i for i in seen if isinstance(i, TailEvent)] == []
    assert data_of(seen) == forged
    chunks = [i for i in seen if isinstance(i, TailChunk)]
    assert chunks[-1].offset + len(chunks[-1].data) == len(forged)  # the offset never went back to 0


async def test_a_truncated_log_has_no_hole_while_its_process_writes_on(
    transport: ShellTransport, nodes_dir: str
) -> None:
    run_dir = run_dir_for(transport, nodes_dir, "writer")
    body = "head -c 1000000 /dev/zero | tr '\\0' x; echo; while :; do echo tick; sleep 0.05; done"
    handle = await transport.spawn_detached(spec(run_dir, body, "writer"))
    log = Path(run_dir, "log")
    for _ in range(400):
        if log.exists() and log.stat().st_size > 1_000_000:
            break
        await asyncio.sleep(0.025)
    os.truncate(log, 0)  # what `: > log` does to a log someone wants to empty
    for _ in range(400):
        if log.read_bytes().count(b"tick") >= 2:
            break
        await asyncio.sleep(0.025)
    assert log.stat().st_size < 10_000 and b"\0" not in log.read_bytes()  # appended at the new end
    await transport.stop(handle, grace=5)
