"""The console through Textual's Pilot: the demo brought up with a key press, the board filling
in, logs of one process and of all, bringing it down; and a snapshot of the board."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cpconsole.core.orchestrate import Orchestrator
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile, load_profile_text
from cpconsole.core.remote import LocalTransport
from cpconsole.core.session import Session
from cpconsole.ui.app import ConsoleApp
from cpconsole.ui.screens.board import BoardScreen
from cpconsole.ui.screens.logs import LogsScreen
from cpconsole.ui.widgets.process_table import ProcessTable

from .conftest import PROFILES
from .simcluster import demo_text


@pytest.fixture
async def demo_session(tmp_path: Path) -> AsyncIterator[Session]:
    """A session over the fast demo; whatever a failing test left running is stopped afterwards."""
    plan = build_plan(load_profile_text(demo_text(tmp_path)))
    yield Session(plan)
    cleanup = Orchestrator(plan, {n.name: LocalTransport(n.name) for n in plan.nodes})
    await cleanup.down()
    await cleanup.close()


async def wait_for(pilot, condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError("condition never became true")


def cell(app: ConsoleApp, process: str, column: str) -> str:
    return str(app.board.query_one(ProcessTable).get_cell(process, column))


async def test_up_logs_and_down_from_the_keyboard(demo_session: Session) -> None:
    app = ConsoleApp(demo_session, refresh_s=0.2)
    async with app.run_test(size=(160, 48)) as pilot:
        assert isinstance(app.screen, BoardScreen)
        assert cell(app, "decode-0", "state") == "planned"
        await pilot.press("u")
        await wait_for(
            pilot,
            lambda: all(cell(app, p, "state") == "ready" for p in ("prefill-0", "prefill-1", "decode-0", "proxy")),
        )
        assert "P 2/2" in str(app.board.query_one("#rollup").render()) and "ready" in str(
            app.board.query_one("#rollup").render()
        )
        await wait_for(pilot, lambda: "HBM" in str(app.board.query_one("#nodes").render()))
        assert cell(app, "prefill-0", "pid") != "-"
        await pilot.press("2")
        assert isinstance(app.screen, LogsScreen) and app.screen.process is None
        await wait_for(pilot, lambda: app.screen.query_one("Log").line_count > 10)
        assert any("decode-0  | " in line for line in app.screen.query_one("Log").lines)
        await pilot.press("right_square_bracket")
        assert app.screen.process == "prefill-0"
        await pilot.press("3")
        from cpconsole.ui.screens.npus import NpusScreen

        assert isinstance(app.screen, NpusScreen)
        await wait_for(pilot, lambda: all(hasattr(w.content, "rows") for w in app.screen.query(".npu-node")))
        table = app.screen.query_one("#npu-decode-a").content
        assert table.row_count == 16  # type: ignore[attr-defined]
        await pilot.press("4")
        from cpconsole.ui.screens.metrics import MetricsScreen

        assert isinstance(app.screen, MetricsScreen)
        await wait_for(pilot, lambda: app.screen.query_one("#metrics-table").content.row_count == 2)
        rows = app.screen.query_one("#metrics-table").content.columns[0]._cells  # type: ignore[attr-defined]
        assert [str(c) for c in rows] == ["prefill-0", "decode-0"]
        await pilot.press("1")
        assert isinstance(app.screen, BoardScreen)
        await pilot.press("D")
        await wait_for(
            pilot, lambda: all(cell(app, p, "state").startswith("exited") for p in ("prefill-0", "decode-0", "proxy"))
        )
        await pilot.press("q")
    await asyncio.sleep(0)


def test_board_snapshot(snap_compare) -> None:  # type: ignore[no-untyped-def]
    session = Session(build_plan(load_profile(PROFILES / "demo.yaml")))
    assert snap_compare(ConsoleApp(session, live=False), terminal_size=(150, 30))


async def test_plan_screen_shows_exactly_what_runs_and_the_warnings() -> None:
    # the guide's own profile, not started: rendering it connects nowhere
    loaded = load_profile(PROFILES / "deepseek-v3.1-cp-1p1d.yaml")
    session = Session(build_plan(loaded), findings=tuple(map(str, loaded.findings)))
    app = ConsoleApp(session, live=False)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.press("5")
        from cpconsole.ui.screens.plan import PlanScreen

        assert isinstance(app.screen, PlanScreen)
        parts = [w.content for w in app.screen.query("Static")]
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


async def test_logs_search_and_filter_from_the_keyboard(demo_session: Session) -> None:
    app = ConsoleApp(demo_session, refresh_s=0.2)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("u")
        await wait_for(pilot, lambda: all(cell(app, p, "state") == "ready" for p in ("decode-0", "proxy")))
        await pilot.press("2")
        log = app.screen.query_one("Log")
        await wait_for(pilot, lambda: log.line_count > 20)
        await pilot.press("slash", *"KV cache size", "enter")
        status = str(app.screen.query_one("#source").content)
        assert "search: KV cache size (1/5 matches)" in status  # 3 × "GPU KV cache size:", 2 × "Multiplying the …"
        await pilot.press("f", *"decode-0", "enter")
        assert all(line.startswith("decode-0") for line in log.lines)
        assert "filter: decode-0" in str(app.screen.query_one("#source").content)
        await pilot.press("f", "ctrl+u", "enter")  # clear the filter
        assert any(line.startswith("proxy") for line in log.lines)
        await pilot.press("1", "D")
        await wait_for(pilot, lambda: cell(app, "decode-0", "state").startswith("exited"))
        await pilot.press("q")
