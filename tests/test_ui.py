"""The console through Textual's Pilot: the demo brought up with a key press, the board filling
in, logs of one process and of all, bringing it down; and a snapshot of the board."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from rich.console import Console
from rich.table import Table
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input, Log, Select, Static
from textual.widgets.data_table import ColumnKey

from cpconsole.core.orchestrate import Orchestrator
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile, load_profile_text
from cpconsole.core.remote import LocalTransport, LogStore, TailChunk, TailEvent
from cpconsole.core.session import Session
from cpconsole.ui.app import ConsoleApp
from cpconsole.ui.screens.board import BoardScreen
from cpconsole.ui.screens.details import DetailsScreen
from cpconsole.ui.screens.dialogs import ChoiceScreen, ConfirmScreen, HelpScreen
from cpconsole.ui.screens.logs import LogsScreen
from cpconsole.ui.screens.metrics import MetricsScreen
from cpconsole.ui.screens.npus import NpusScreen
from cpconsole.ui.screens.plan import PlanScreen
from cpconsole.ui.screens.preflight import PreflightScreen
from cpconsole.ui.widgets.answer import AnswerView
from cpconsole.ui.widgets.process_table import ProcessTable

from .conftest import PROFILES
from .frozen import frozen_session
from .simcluster import demo_text


async def session_over(text: str) -> AsyncIterator[Session]:
    """A session over a demo profile; whatever a failing test left running is stopped afterwards."""
    plan = build_plan(load_profile_text(text))
    yield Session(plan)
    cleanup = Orchestrator(plan, {n.name: LocalTransport(n.name) for n in plan.nodes})
    await cleanup.down()
    await cleanup.close()


@pytest.fixture
async def demo_session(tmp_path: Path) -> AsyncIterator[Session]:
    async for session in session_over(demo_text(tmp_path)):
        yield session


async def wait_for(
    pilot: Pilot[Any], condition: Callable[[], object], timeout: float = 60.0, *, shown: Callable[[], object] = str
) -> None:
    """Until the condition holds (a hang guard, not a speed bound); on timeout, says what `shown` shows."""
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"condition never became true; shown: {shown()}")


PROCESSES = ("prefill-0", "prefill-1", "decode-0", "proxy")


def text_of(screen: Screen[Any], selector: str) -> str:
    return str(screen.query_one(selector, Static).content)


def table_of(screen: Screen[Any], selector: str) -> Table:
    """The Rich table a Static shows."""
    content = screen.query_one(selector, Static).content
    assert isinstance(content, Table), content
    return content


def plain(renderable: object) -> str:
    """What a Rich renderable shows, as text."""
    out = io.StringIO()
    Console(width=160, file=out, color_system=None).print(renderable)
    return out.getvalue()


def column(table: Table, index: int) -> list[str]:
    return [str(cell) for cell in table.columns[index].cells]


def cell(app: ConsoleApp, process: str, column: str) -> str:
    return str(app.board.query_one(ProcessTable).get_cell(process, column))


async def test_walkthrough_up_logs_npus_metrics_restart_and_quit_leaving_it_running(demo_session: Session) -> None:
    app = ConsoleApp(demo_session, refresh_s=0.2)
    async with app.run_test(size=(160, 48)) as pilot:
        assert isinstance(app.screen, BoardScreen)
        assert cell(app, "decode-0", "state") == "planned"
        # the first up of a session offers a preflight; it runs, passes, and the deployment starts
        await pilot.press("u")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("p")
        assert isinstance(app.screen, PreflightScreen)
        await wait_for(
            pilot,
            lambda: "0 failed" in text_of(app.screen, "#preflight-head"),
            shown=lambda: [c for c in app.session.preflight_checks or [] if c.status != "PASS"],
        )
        assert "link UP on 48/48 chips" in column(table_of(app.screen, "#preflight-table"), 2)
        await pilot.press("1")
        await wait_for(pilot, lambda: all(cell(app, p, "state") == "ready" for p in PROCESSES))
        rollup = str(app.board.query_one("#rollup").render())
        assert "P 2/2" in rollup and "ready" in rollup
        await wait_for(pilot, lambda: "HBM" in str(app.board.query_one("#nodes").render()))
        assert cell(app, "prefill-0", "pid") != "-"

        # logs: merged, search, filter, switch process
        await pilot.press("2")
        assert isinstance(app.screen, LogsScreen) and app.screen.process is None
        log = app.screen.query_one(Log)
        await wait_for(pilot, lambda: log.line_count > 20)
        assert any("decode-0  | " in line for line in log.lines)
        await pilot.press("slash", *"KV cache size", "enter")
        status = text_of(app.screen, "#source")
        assert "search: KV cache size (1/5 matches)" in status  # 3 × "GPU KV cache size:", 2 × "Multiplying the …"
        await pilot.press("f", *"decode-0", "enter")
        assert all(line.startswith("decode-0") for line in log.lines)
        await pilot.press("f", "ctrl+u", "enter")  # clear the filter
        assert any(line.startswith("proxy") for line in log.lines)
        await pilot.press("right_square_bracket")
        assert app.screen.process == "prefill-0"

        await pilot.press("3")
        assert isinstance(app.screen, NpusScreen)
        await wait_for(
            pilot, lambda: all(isinstance(w.content, Table) for w in app.screen.query(".npu-node").results(Static))
        )
        assert table_of(app.screen, "#npu-decode-a").row_count == 16
        await pilot.press("4")
        assert isinstance(app.screen, MetricsScreen)
        await wait_for(pilot, lambda: table_of(app.screen, "#metrics-table").row_count == 3)
        # the API servers, and the proxy: what clients wait for end to end
        assert column(table_of(app.screen, "#metrics-table"), 0) == ["prefill-0", "decode-0", "proxy"]

        # details of the decode row, then restart it: declined once, then confirmed
        await pilot.press("1")
        await wait_for(pilot, lambda: app.screen is app.board)  # the board is up before its rows are moved in
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailsScreen))
        assert isinstance(app.screen, DetailsScreen) and app.screen.process == "decode-0"
        summary = text_of(app.screen, "#summary")
        assert "decode of decode" in summary and "--kv-transfer-config" in summary
        old_pid = demo_session.orchestrator.views["decode-0"].pid
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert isinstance(app.screen, DetailsScreen) and demo_session.busy is None
        await pilot.press("r", "y")
        await wait_for(pilot, lambda: demo_session.orchestrator.views["decode-0"].pid not in (None, old_pid))
        await pilot.press("escape")
        assert app.screen is app.board
        await wait_for(
            pilot,
            lambda: all(cell(app, p, "state") == "ready" for p in PROCESSES),
            shown=lambda: {n: (v.state, v.reason) for n, v in demo_session.orchestrator.views.items()},
        )

        await pilot.press("q")
        assert isinstance(app.screen, ChoiceScreen) and "still running" in app.screen.question
        await pilot.press("l")  # leave running: the default
    assert app.return_value == 0
    # the next console adopts what this one left running
    again = Session(demo_session.plan)
    for _ in range(60):  # its adoption reads each health once: the proxy's answers once the restarted
        # decode is back in its rotation (a hang guard, not a speed bound)
        await again.orchestrator.adopt()
        if all(v.state == "ready" for v in again.orchestrator.views.values()):
            break
        await asyncio.sleep(0.5)
    assert {n: v.state for n, v in again.orchestrator.views.items() if v.state != "ready"} == {}
    assert again.orchestrator.views["decode-0"].pid == demo_session.orchestrator.views["decode-0"].pid
    await again.close()


@pytest.fixture
async def crashing_session(tmp_path: Path) -> AsyncIterator[Session]:
    """The demo whose engines die after three requests (the sim's CPCONSOLE_SIM_CRASH_AFTER)."""
    async for session in session_over(demo_text(tmp_path, extra_env={"CPCONSOLE_SIM_CRASH_AFTER": "3"})):
        yield session


async def test_a_dead_engine_and_a_killed_proxy_show_on_the_board_with_their_cause(crashing_session: Session) -> None:
    app = ConsoleApp(crashing_session, refresh_s=0.2)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("u", "s")  # start now, skipping the preflight offered first
        await wait_for(pilot, lambda: all(cell(app, p, "state") == "ready" for p in PROCESSES))
        proxy = crashing_session.plan.process("proxy")
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            for _ in range(4):
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(
                        f"{proxy.base_url}/v1/completions",
                        json={"model": "deepseek_v3", "prompt": "hi", "max_tokens": 2},
                    )
        await wait_for(pilot, lambda: cell(app, "decode-0", "state").startswith(("exited", "failed")))
        assert cell(app, "decode-0", "why / last line") == "the engine died"
        # the pid shown is the wrapper that records the exit code; kill the server under it, as the OOM killer would
        children = psutil.Process(int(cell(app, "proxy", "pid"))).children()  # the server, the log's keeper
        (server,) = [child for child in children if "cpconsole.proxy" in " ".join(child.cmdline())]
        server.send_signal(signal.SIGKILL)
        await wait_for(pilot, lambda: cell(app, "proxy", "state").startswith("exited"))
        assert cell(app, "proxy", "state") == "exited(-9)"
        assert cell(app, "proxy", "why / last line") == "killed by signal 9"
        # the error line is one key away in the decode's log
        await pilot.press(":", *"logs decode-0", "enter")
        assert isinstance(app.screen, LogsScreen) and app.screen.process == "decode-0"
        log = app.screen.query_one(Log)
        await wait_for(pilot, lambda: log.line_count > 10)
        await pilot.press("e")
        assert isinstance(app.screen, LogsScreen) and app.screen.marked_line is not None
        assert "EngineCore encountered a fatal error" in log.lines[app.screen.marked_line]
        await wait_for(pilot, lambda: not crashing_session.running)  # the prefill engines died of it too
        await pilot.press("q")  # nothing left running: no question
    assert app.return_value == 0


@pytest.fixture
def utc() -> Iterator[None]:
    """Times of day and uptimes are local time: snapshots render them in UTC, wherever they run."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


SNAPSHOT_KEYS = {
    "board": [],
    "logs": ["2"],
    "npus": ["3"],
    "metrics": ["4"],
    "plan": ["5"],
    "details": ["down", "enter"],
    "help": ["question_mark"],
    "quit": ["q"],
    "command": ["colon", *"restart d"],
    "confirm": ["D"],
    "prompt": ["6", *"Hello, who are you?"],
    "preflight": ["7"],
    "preflight-all": ["7", "v"],
    "alerts": ["8"],
    "ranks": ["9"],
}


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
@pytest.mark.parametrize("view", list(SNAPSHOT_KEYS))
def test_snapshot(snap_compare, utc, view: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(ConsoleApp(frozen_session(), live=False), press=SNAPSHOT_KEYS[view], terminal_size=size)


async def test_plan_screen_shows_exactly_what_runs_and_the_warnings() -> None:
    # the guide's own profile, not started: rendering it connects nowhere
    loaded = load_profile(PROFILES / "deepseek-v3.1-cp-1p1d.yaml")
    session = Session(build_plan(loaded), findings=tuple(map(str, loaded.findings)))
    app = ConsoleApp(session, live=False)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.press("5")
        assert isinstance(app.screen, PlanScreen)
        parts = [w.content for w in app.screen.query(Static)]
        text = " ".join(getattr(p, "code", None) or str(p) for p in parts)  # Syntax keeps its source in .code
        assert "Mooncake's random port range" in text and "prefill-1  (prefill on prefill-b, 192.0.0.2)" in text
        assert "--headless" in text and "--kv-transfer-config" in text
        await pilot.press("2")
        assert isinstance(app.screen, LogsScreen)
        await pilot.press("1")
        assert isinstance(app.screen, BoardScreen)
        await pilot.press("q")


def test_search_filter_and_error_jumps_are_plain_functions() -> None:
    from cpconsole.core.logsearch import ERROR_LINE, compile_query, find, keep, parse_filter, step

    lines = ["INFO start", "ERROR 01-02 boom", "GET /health 200", "INFO kv cache 5,000 tokens", "ValueError: bad"]
    assert find(lines, compile_query("KV CACHE")) == [3]
    assert find(lines, compile_query("[unclosed")) == []  # not a regex: searched as text
    assert find(lines, ERROR_LINE) == [1, 4]
    rule = parse_filter("!/health")
    assert [line for line in lines if keep(line, rule)] == [lines[0], lines[1], lines[3], lines[4]]
    assert parse_filter("") is None
    assert step([1, 4], 1, 1) == 4 and step([1, 4], 4, 1) == 1 and step([1, 4], 1, -1) == 4 and step([], 0, 1) is None


async def test_command_line_help_and_read_only(utc: None, tmp_path: Path) -> None:
    session = frozen_session()
    session.read_only = True
    app = ConsoleApp(session, live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("colon", *"logs decode-0", "enter")
        assert isinstance(app.screen, LogsScreen) and app.screen.process == "decode-0"
        await pilot.press("colon", *"details proxy", "enter")
        assert isinstance(app.screen, DetailsScreen) and app.screen.process == "proxy"
        await pilot.press("colon", *"restat decode", "enter")  # a typo: said, nothing happens
        assert any("did you mean 'restart'" in n for n in app.notices)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = plain(app.screen.query_one(Static).content)
        assert ":restart TARGET" in help_text and "Logs" in help_text
        assert re.search(r"\n *2 +Logs +screen\.logs *\n", help_text)  # key, what it does, its keymap id
        await pilot.press("escape", "1", "u", "D", "r")  # read-only: refused, no question asked
        assert app.screen is app.board and session.busy is None
        assert sum("read-only console" in n for n in app.notices) == 3
        await pilot.press("q")  # read-only quits without asking, whatever runs
    assert app.return_value == 0


async def test_logs_banner_dropped_lines_and_save(utc: None, tmp_path: Path) -> None:
    session = frozen_session()
    store = LogStore(max_lines=100)
    session.orchestrator.stores["decode-0"] = store
    store.feed(TailChunk(0, b"".join(b"line %d\n" % i for i in range(50))))
    app = ConsoleApp(session, live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("colon", *"logs decode-0", "enter")
        await pilot.pause()  # the pushed screen composes on a later turn of the loop (seen under load)
        screen = app.screen
        assert isinstance(screen, LogsScreen)
        screen.save_dir = tmp_path
        assert screen.query_one("#banner").has_class("hidden")
        store.feed(TailEvent("disconnected", "connection lost"))
        store.feed(TailChunk(store.offset, b"".join(b"more %d\n" % i for i in range(300))))  # the ring keeps 100
        screen.refresh_from(session)
        await pilot.pause()
        banner = screen.query_one("#banner", Static)
        assert not banner.has_class("hidden")
        assert "decode-0: stream disconnected (connection lost) — resuming" in str(banner.content)
        assert screen.dropped == 200 and "200 lines dropped" in text_of(screen, "#source")
        store.feed(TailEvent("resumed"))
        screen.refresh_from(session)
        assert banner.has_class("hidden")
        await pilot.press("s")
        (saved,) = tmp_path.glob("cpconsole-decode-0-*.log")
        lines = saved.read_text().splitlines()
        assert lines[:2] == ["line 0", "line 1"] and lines[-1] == "more 299" and len(lines) == 150


async def test_prompt_pane_streams_measures_keeps_history_and_probes_every_hop(tmp_path: Path) -> None:
    from cpconsole.core.smoke.history import History
    from cpconsole.ui.screens.prompt import PromptScreen

    from .simcluster import cluster

    c = cluster(tmp_path)  # only the decode server runs: the probe path must name the other hops
    await c.start("decode-0")
    try:
        await c.wait_http("decode-0")
        history = History(tmp_path / "state" / "prompts.jsonl")
        app = ConsoleApp(Session(c.plan, history=history), live=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("6")
            screen = app.screen
            assert isinstance(screen, PromptScreen)
            screen.export_dir = tmp_path
            screen.query_one("#target", Select).value = "decode-0"
            await pilot.press(*"hello there", "ctrl+r")
            await wait_for(pilot, lambda: screen.last is not None)
            record = screen.last
            assert record is not None and record.error is None and record.target == "decode-0"
            assert record.output_tokens and record.ttft_s and "TTFT" in text_of(screen, "#prompt-stats")
            answer = screen.query_one("#answer", AnswerView)
            assert record.answer.strip()[:20] in answer.text  # streamed in, piece by piece
            long_lines = [line for line in answer.text.splitlines() if len(line) > answer.size.width]
            assert long_lines  # the simulated answer has lines longer than the pane …
            assert answer.wrapped_document.height > len(answer.text.splitlines())  # … shown wrapped, not cut
            assert [r.prompt for r in history.load()] == ["hello there"]
            await pilot.press("ctrl+t")
            await wait_for(pilot, lambda: isinstance(screen.query_one("#prompt-stats", Static).content, Table))
            table = table_of(screen, "#prompt-stats")
            assert dict(zip(column(table, 0), column(table, 1), strict=True)) == {
                "prefill-0": "FAIL",
                "decode-0": "ok",
                "proxy": "FAIL",
            }
            await pilot.press("ctrl+e")
            (exported,) = tmp_path.glob("cpconsole-prompts-*.md")
            assert "hello there" in exported.read_text() and "TTFT" in exported.read_text()
    finally:
        await c.stop_all()


async def test_prompt_pane_runs_the_needle_sweep_and_the_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cpconsole.core.session import CheckSettings
    from cpconsole.core.smoke.bench import BenchSettings
    from cpconsole.ui.screens.prompt import PromptScreen

    from .simcluster import cluster
    from .test_bench import FIXTURE, STAND_IN

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    c = cluster(tmp_path)
    await c.start("decode-0")
    vllm = tmp_path / "vllm"  # bench runs a stand-in that answers with the real captured result
    vllm.write_text(STAND_IN.format(record=tmp_path / "argv", fixture=FIXTURE))
    vllm.chmod(0o755)
    plan = c.plan.model_copy(
        update={
            "processes": tuple(
                p.model_copy(update={"argv": (str(vllm), *p.argv[p.argv.index("serve") :])}) if p.role != "proxy" else p
                for p in c.plan.processes
            )
        }
    )
    checks = CheckSettings(needle_tokens=3000, max_tokens=32, bench=BenchSettings(2048, 64, 20))
    try:
        await c.wait_http("decode-0")
        app = ConsoleApp(Session(plan, checks=checks), live=False)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("6")
            screen = app.screen
            assert isinstance(screen, PromptScreen)
            screen.query_one("#target", Select).value = "decode-0"
            await pilot.press("ctrl+n")
            stats = screen.query_one("#prompt-stats", Static)
            await wait_for(pilot, lambda: getattr(stats.content, "title", "") == "needle test")
            table = table_of(screen, "#prompt-stats")
            assert column(table, 0) == ["10%", "50%", "90%"] and column(table, 2) == ["found"] * 3
            assert all(int(t.split()[0]) > 2500 for t in column(table, 1))

            await pilot.press("ctrl+b")
            assert isinstance(app.screen, ConfirmScreen) and "20 prompts of 2048 tokens" in app.screen.question
            await pilot.press("y")
            await wait_for(pilot, lambda: "this run" in str(stats.content))
            assert "2048/64/20" in str(stats.content)
            streamed = screen.query_one("#answer", AnswerView).text
            assert "Starting main benchmark run..." in streamed and "Serving Benchmark Result" in streamed
            assert "--random-input-len\n2048" in (tmp_path / "argv").read_text()
            assert len(list((tmp_path / "state" / "cpconsole" / "bench" / "demo").glob("*.json"))) == 1  # kept
    finally:
        await c.stop_all()


def test_a_board_at_rest_stays_still() -> None:
    from cpconsole.core.orchestrate import ProcessView
    from cpconsole.ui.widgets.process_table import steady

    view = ProcessView("decode-0", state="ready", started_at="2026-11-28T01:00:00")
    start = time.mktime(time.strptime("2026-11-28T01:00:00", "%Y-%m-%dT%H:%M:%S"))  # started_at is local time
    assert [view.uptime(start + s) for s in (7, 59, 60, 61, 119, 3600 + 125)] == [
        "0m07s",
        "0m59s",
        "1m",
        "1m",
        "1m",
        "1h02m",
    ]  # seconds only in the first minute
    shown = None
    for latency in (3.2, 4.1, 2.6, 4.9, 3.0):  # loopback jitter: the first value stays on screen
        shown = steady(shown, latency)
    assert shown == 3.2
    assert (
        steady(3.2, 9.0) == 9.0
        and steady(40.0, 55.0) == 55.0
        and steady(40.0, 48.0) == 40.0
        and steady(3.0, None) is None
    )


async def test_choice_dialog_keys_enter_takes_the_default_and_escape_the_way_out(utc: None) -> None:
    app = ConsoleApp(frozen_session(), live=False)  # every process "ready": quitting asks
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("q")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("escape")  # cancel: still here
        assert isinstance(app.screen, BoardScreen)
        await pilot.press("q", "x")  # a key that is no answer changes nothing
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("enter")  # the default: leave them running
    assert app.return_value == 0


@pytest.mark.parametrize("size", [(80, 24), (120, 30)], ids=["80", "120"])
async def test_the_board_shows_the_head_of_a_log_lines_message(size: tuple[int, int]) -> None:
    """Not its tail (": 0 reqs, Waiting:") nor vLLM's prefix ("(APIServer pid=5756) INFO 11-28 …")."""
    session = frozen_session()
    app = ConsoleApp(session, live=False)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        assert cell(app, "decode-0", "why / last line").startswith("Engine 000: Avg prompt throughput: 10.5 tokens/s")
        assert cell(app, "proxy", "why / last line").startswith("Uvicorn running on http://127.0.0.11:8005")


@pytest.mark.parametrize("size", [(80, 24), (120, 30)], ids=["80", "120"])
async def test_a_state_that_grows_widens_its_column(size: tuple[int, int]) -> None:
    session = frozen_session()
    app = ConsoleApp(session, live=False)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        views = session.orchestrator.views
        views["decode-0"] = dataclasses.replace(views["decode-0"], state="exited", exit_code=-15, leftovers=2)
        app.board.refresh_from(session)
        await pilot.pause()
        table = app.board.query_one(ProcessTable)
        assert cell(app, "decode-0", "state") == "exited(-15)+2"
        assert table.columns[ColumnKey("state")].content_width >= len("exited(-15)+2")  # shown whole, not "exite"


async def test_the_board_says_it_is_still_finding_what_runs_and_answers_keys(silent_listener: tuple[str, int]) -> None:
    """Adoption asks every node (over SSH, a round trip or a connect timeout each): meanwhile the
    board lists the processes and says it is still looking (not "not ready"), and keys land."""
    from cpconsole.core.profile.schema import SshSettings
    from cpconsole.core.remote import SSHTransport

    ip, port = silent_listener
    plan = build_plan(load_profile_text(demo_text(Path("/nonexistent"))))  # nothing of it runs
    ssh = SshSettings(port=port)
    silent = {
        n.name: SSHTransport(n.model_copy(update={"host": ip, "transport": "ssh", "ssh": ssh}), connect_timeout=60)
        for n in plan.nodes
    }
    app = ConsoleApp(Session(plan, silent))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("colon", *"help")
        assert str(app.screen.query_one("#command", Input).value) == "help"
        assert app.session.busy == "finding what runs"  # the nodes have not answered yet
        await pilot.press("escape")
        app.refresh_screens()  # what the once-a-second refresh shows
        assert "finding what runs" in str(app.board.query_one("#rollup", Static).content)
        await pilot.press("q")


async def test_every_screen_opens_by_its_key_its_command_and_the_palette(utc: None) -> None:
    from cpconsole.ui.places import PLACES

    app = ConsoleApp(frozen_session(), live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        for place in PLACES:  # each time from the board (the prompt pane keeps typed keys for its prompt)
            kind = place.screen or BoardScreen
            for way in ("key", "command line", "palette"):
                app.action_show("board")
                await pilot.pause()
                if way == "key":
                    await pilot.press(place.key)
                elif way == "command line":
                    await pilot.press("colon", *place.name, "enter")
                else:
                    commands[place.label].callback()
                await pilot.pause()
                assert type(app.screen) is kind, (place, way)
        app.action_show("board")
        await pilot.press("q", "enter")


async def test_keys_are_remapped_by_binding_id_and_a_bad_keymap_is_said(
    utc: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keymap = tmp_path / "cpconsole" / "keymap.yaml"
    keymap.parent.mkdir()
    keymap.write_text("screen.npus: n\nscreen.nups: m\nup: ''\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    app = ConsoleApp(frozen_session(), live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        assert isinstance(app.screen, BoardScreen)  # its old key no longer opens it …
        await pilot.press("n")
        assert isinstance(app.screen, NpusScreen)  # … its new one does
        assert any("no binding 'screen.nups' (did you mean 'screen.npus'?)" in n for n in app.notices)
        assert any("up wants a key like" in n for n in app.notices)
        await pilot.press("1", "q", "enter")


async def test_an_action_that_raises_is_said_and_kept_and_the_console_stays(utc: None) -> None:
    session = frozen_session()
    app = ConsoleApp(session, live=False)

    async def broken() -> None:
        raise ValueError("a bug of ours")

    async with app.run_test(size=(120, 40)) as pilot:
        app.work(broken(), group="exec")
        await wait_for(pilot, lambda: any("exec failed" in n for n in app.notices), shown=lambda: list(app.notices))
        assert "exec failed: ValueError('a bug of ours')" in app.notices[-1]
        assert any(a.key == "broken:exec" and a.severity == "warning" for a in session.alerts)
        await pilot.press("8")  # the console still answers: the alerts screen lists it
        assert any("exec failed" in line for line in column(table_of(app.screen, "#alerts-table"), 3))
        await pilot.press("1", "q", "enter")


async def test_a_burst_after_colon_lands_whole_and_colon_types_where_text_is_typed(utc: None) -> None:
    """`:up⏎` arriving in one read (pasted, or typed fast right after the board shows) opens the
    command line and every key after `:` lands in it; where text is typed, `:` is just a colon."""
    from textual import events
    from textual.widgets import TextArea

    from cpconsole.ui.screens.prompt import PromptScreen

    session = frozen_session()
    session.read_only = True
    app = ConsoleApp(session, live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        for key, character in (("colon", ":"), ("u", "u"), ("p", "p"), ("enter", None)):
            app.post_message(events.Key(key, character))  # all queued before any is handled
        await wait_for(
            pilot, lambda: any("read-only console" in n for n in app.notices), shown=lambda: list(app.notices)
        )
        assert isinstance(app.screen, BoardScreen)  # `:up` ran (and was refused: read-only)
        await pilot.press("6")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("a", "colon", "b")
        assert app.screen.query_one("#prompt-text", TextArea).text == "a:b"
        assert isinstance(app.screen, PromptScreen)


async def test_the_accuracy_screen_asks_shows_progress_keeps_the_run_and_cancels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.widgets import ProgressBar

    from cpconsole.core.session import CheckSettings
    from cpconsole.core.smoke.accuracy import QUICK_ITEMS, load_accuracy
    from cpconsole.ui.screens.accuracy import AccuracyScreen

    from .simcluster import cluster

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    c = cluster(tmp_path)
    try:
        for name in ("prefill-0", "prefill-1", "decode-0", "proxy"):
            await c.start(name)
        await c.wait_http("proxy", "/healthcheck")
        checks = CheckSettings(accuracy_tokens=32)  # the simulator answers to the last token: keep them short
        app = ConsoleApp(Session(c.plan, checks=checks), live=False)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("A")
            screen = app.screen
            assert isinstance(screen, AccuracyScreen)
            head = screen.query_one("#accuracy-head", Static)
            assert "no accuracy check of this profile yet" in str(head.content)
            await pilot.press("s")
            assert (
                isinstance(app.screen, ConfirmScreen) and f"first {QUICK_ITEMS} items of gsm8k" in app.screen.question
            )
            await pilot.press("y")
            await wait_for(
                pilot, lambda: "checking gsm8k through proxy" in str(head.content), shown=lambda: head.content
            )
            assert screen.query_one(ProgressBar).total == QUICK_ITEMS
            await wait_for(pilot, lambda: "newest" in str(head.content), shown=lambda: head.content)
            (run,) = load_accuracy("demo")
            right = sum(i.correct for i in run.items)
            assert run.samples == QUICK_ITEMS and f"gsm8k {right}/{QUICK_ITEMS}, " in str(head.content)
            table = screen.query_one("#accuracy-table", Static).content
            assert (
                isinstance(table, Table) and column(table, 2)[0] == "gsm8k" and column(table, 3)[0] == str(QUICK_ITEMS)
            )
            await pilot.press("s", "y", "x")  # a second check, cancelled at once: nothing of it is kept
            await wait_for(pilot, lambda: screen.live is None, shown=lambda: head.content)
            assert len(load_accuracy("demo")) == 1
    finally:
        await c.stop_all()


async def test_a_shows_what_apply_would_do_and_does_it_when_told(tmp_path: Path) -> None:
    from cpconsole.core.plan import build_plan
    from cpconsole.core.profile import load_profile_text

    from .simcluster import demo_text, one_p_two_d
    from .test_day_two import without_decode2
    from .test_orchestrate import cpconsole

    full = one_p_two_d(demo_text(tmp_path))
    profile = tmp_path / "demo.yaml"
    profile.write_text(without_decode2(full))
    try:
        assert cpconsole("up", profile).returncode == 0
        app = ConsoleApp(Session(build_plan(load_profile_text(full))))  # the profile, edited since
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: app.session.orchestrator.views["proxy"].state == "ready")
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert isinstance(app.screen, ConfirmScreen)
            assert (
                "1. start decode2: new in the profile" in app.screen.question
                and "2. route decode " in app.screen.question
            )
            await pilot.press("y")
            await wait_for(pilot, lambda: app.session.orchestrator.views["decode2-0"].state == "ready", timeout=120)
            await wait_for(pilot, lambda: not app.session.busy)
    finally:
        profile.write_text(full)
        cpconsole("down", profile)
