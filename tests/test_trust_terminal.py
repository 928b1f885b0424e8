"""Text from a process's log never acts on the terminal it is shown on: escape sequences and
control characters are shown, not obeyed, in `logs`, `status`, the log store the console reads,
and error messages; raw bytes only where asked (`--since-offset`). One line's length is capped."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport, LogStore, TailChunk
from cpconsole.core.remote.errors import CommandFailed
from cpconsole.core.remote.launch import run_dir, spawn_spec
from cpconsole.core.remote.logstore import MAX_LINE
from cpconsole.core.safetext import terminal_safe

from .conftest import write_profile
from .simcluster import demo_text
from .test_cli import cpconsole

# what a hostile or broken process may print: retitle the pane, clear the screen, a hyperlink,
# a DCS string, bell, NUL, backspace, an 8-bit CSI, raw binary
NASTY = (
    b"\x1b]0;owned-title\x07INFO \x1b[2J\x1b[Hcleared\n"
    b"\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\ \x1bP1$qm\x1b\\dcs\x07\x00\x08x\xc2\x9b31m c1\n"
    b"\xff\xfe\x00\x01binary\x1bc reset\n"
)
ACTING = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # anything a terminal would act on (newline aside)


def assert_inert(text: str) -> None:
    for line in text.splitlines():
        assert not ACTING.search(line), repr(line)


def test_sequences_and_controls_are_shown_not_obeyed() -> None:
    assert terminal_safe("\x1b[1;32mINFO\x1b[0m ready") == "INFO ready"  # colours go silently
    assert terminal_safe("\x1b]0;title\x07after") == "␛after"
    assert terminal_safe("a\tb\x07c\x00d") == "a\tb␇c␀d"
    assert terminal_safe("\x1bP1;2q\x1b\\x") == "␛x"
    assert terminal_safe("cut OSC \x1b]0;never ends") == "cut OSC ␛"
    for line in NASTY.decode("utf-8", "replace").splitlines():
        assert_inert(terminal_safe(line))


def test_the_log_store_keeps_only_inert_lines_and_caps_their_length() -> None:
    store = LogStore()
    store.feed(TailChunk(0, NASTY))
    assert store.total == 3
    assert_inert("\n".join(store.last(3)))
    assert "cleared" in store.last(3)[0] and "binary" in store.last(3)[2]
    offset = len(NASTY)
    for _ in range(40):  # a 40 × 8 KiB line without a newline, arriving piece by piece
        store.feed(TailChunk(offset, b"y" * 8192))
        offset += 8192
    store.feed(TailChunk(offset, b"tail\nnext\n"))
    long, following = store.last(2)
    assert long.startswith("y" * 1000) and len(long) < MAX_LINE + 100
    assert long.endswith(f"[{40 * 8192 + 4 - MAX_LINE} more bytes of this line not shown]")
    assert following == "next" and store.offset == offset + 10


def test_remote_errors_quote_stderr_inertly() -> None:
    error = CommandFailed("node", "cannot start", 1, b"\x1b]0;title\x07oops\x1b[2J")
    assert_inert(str(error))
    assert "oops" in str(error)


async def test_logs_and_status_show_a_hostile_log_inertly_and_raw_only_when_asked(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, demo_text(tmp_path))
    plan = build_plan(load_profile_text(profile.read_text()))
    proc = plan.process("decode-0")
    node = LocalTransport(proc.node)
    script = "#!/bin/sh\ncat " + str(tmp_path / "nasty") + "\nexit 3\n"
    (tmp_path / "nasty").write_bytes(NASTY)
    handle = await node.spawn_detached(replace(spawn_spec(plan, proc), script=script))
    for _ in range(400):
        if (await node.status(handle)).state == "exited":
            break
        await asyncio.sleep(0.025)
    await node.close()

    logs = await asyncio.to_thread(cpconsole, "logs", profile, "-p", "decode-0")
    assert logs.returncode == 0 and "cleared" in logs.stdout and "binary" in logs.stdout
    assert_inert(logs.stdout)
    status = await asyncio.to_thread(cpconsole, "status", profile)
    assert "decode-0" in status.stdout
    assert_inert(status.stdout)
    assert_inert(status.stderr)
    raw = subprocess.run(
        [sys.executable, "-m", "cpconsole", "logs", str(profile), "-p", "decode-0", "--since-offset", "0"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert raw.stdout == Path(run_dir(plan, proc), "log").read_bytes() == NASTY  # asked for: the bytes as they are
