"""The deployment's journal: every action, from the CLI or a console, appended on the profile's
first node and read back by anyone — over SSH too; a journal that cannot be written never stops the
action it records."""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path

from rich.table import Table
from textual.widgets import Static

from cpconsole.core.journal import JournalEntry, append, journal_place, read
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport, SSHTransport, Transport
from cpconsole.core.session import Session
from cpconsole.ui.app import ConsoleApp

from .simcluster import demo_text, over_ssh
from .sshd import Sshd
from .test_orchestrate import cpconsole
from .test_ui import column, table_of, wait_for


def test_every_cli_action_is_journaled_with_who_what_and_how_it_ended(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    plan = build_plan(load_profile_text(profile.read_text()))
    try:
        assert cpconsole("up", profile).returncode == 0
        assert cpconsole("restart", profile, "decode", "--allow-downtime").returncode == 0
    finally:
        assert cpconsole("down", profile).returncode == 0
    done = cpconsole("journal", profile, "--json")
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)
    assert [(e["verb"], e["targets"], e["result"]) for e in entries] == [
        ("up", [], "ok"),
        ("restart", ["decode"], "ok"),
        ("down", [], "ok"),
    ]
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert {(e["who"], e["via"], e["digest"]) for e in entries} == {(me, "cli", plan.digest)}
    assert all(e["seconds"] > 0 for e in entries)
    node, path = journal_place(plan)
    assert node == "prefill-a" and Path(path).read_text().count("\n") == 3  # on the first node, a line each
    text = cpconsole("journal", profile, "-n", "1").stdout
    assert text.count("\n") == 1 and " down " in text and " ok " in text and " cli " in text


async def test_the_journal_is_read_back_from_the_node_over_ssh(sshd: Sshd, nodes_dir: str, tmp_path: Path) -> None:
    text = over_ssh(demo_text(tmp_path, block=sshd.block), sshd, tmp_path, nodes_dir)
    plan = build_plan(load_profile_text(text))
    transports: dict[str, Transport] = {n.name: SSHTransport(n) for n in plan.nodes}
    async with Session(plan, transports, via="console") as session:
        results = await session.exec(["decode-a", "prefill-b"], ["true"])
        assert all(not isinstance(r, str) and r.ok for r in results.values())
        (entry,) = await session.journal()
    assert entry.verb == "exec true" and entry.targets == ("decode-a", "prefill-b")
    assert (entry.via, entry.result) == ("console", "ok") and entry.who == session.orchestrator.operator
    for transport in transports.values():
        await transport.close()


async def test_a_journal_that_cannot_be_written_is_said_and_the_action_runs(tmp_path: Path) -> None:
    text = demo_text(tmp_path).replace(f"  run_dir: {tmp_path}/run", "  run_dir: /proc/cpconsole-no-such-place")
    plan = build_plan(load_profile_text(text))
    async with Session(plan) as session:
        results = await session.exec(["decode-a"], ["true"])
        assert not isinstance(results["decode-a"], str) and results["decode-a"].ok  # it ran
        assert await session.journal() == []
    (alert,) = session.alerts
    assert alert.key == "broken:writing the journal" and "cannot write the journal" in alert.message


def test_a_torn_or_foreign_line_is_skipped() -> None:
    good = JournalEntry("2026-12-02T10:00:00Z", "a@b", "cli", "up", (), "d", "ok", 1.5)
    assert JournalEntry.parse(good.line()) == good
    assert JournalEntry.parse('{"at": "2026-12-02T10:0') is None and JournalEntry.parse("[1, 2]") is None


async def test_every_console_sees_the_journal_of_the_deployment(tmp_path: Path) -> None:
    """What the CLI did shows on a console's journal screen (0), newest first."""
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    assert cpconsole("exec", profile, "--all", "--", "true").returncode == 0
    session = Session(build_plan(load_profile_text(profile.read_text())), via="console")
    app = ConsoleApp(session, live=False)
    async with app.run_test(size=(140, 30)) as pilot:
        await pilot.press("0")
        await wait_for(pilot, lambda: isinstance(app.screen.query_one("#journal-table", Static).content, Table))
        (row,) = zip(*(column(table_of(app.screen, "#journal-table"), i) for i in range(6)), strict=True)
        assert row[2:5] == ("cli", "exec true prefill-a prefill-b decode-a", "ok")
        await pilot.press("1", "q", "enter")


async def test_a_journal_under_the_login_home_is_written_there_not_in_a_directory_named_tilde(
    tmp_path: Path,
) -> None:
    node = LocalTransport("first")
    node.env["HOME"] = str(tmp_path)  # this node's login home
    entry = JournalEntry("2026-12-02T10:00:00Z", "alice@jump", "cli", "up", (), "d1", "ok", 1.5)
    await append(node, "~/.cache/cpconsole/demo-x/journal.jsonl", entry)
    assert (tmp_path / ".cache/cpconsole/demo-x/journal.jsonl").read_text() == entry.line() + "\n"
    assert await read(node, "~/.cache/cpconsole/demo-x/journal.jsonl", 5) == [entry]
