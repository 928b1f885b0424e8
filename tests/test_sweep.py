"""The context-length sweep: exact prompt lengths by the server's tokenizer, TTFT and its split
through cpconsole's proxy, runs stored and compared (PCP on against off on the demo), and the
reports a ticket gets (text with a chart, Markdown, JSON)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cpconsole.core.smoke.client import RequestResult, server_timing
from cpconsole.core.smoke.sweep import (
    GUIDE,
    SweepPoint,
    SweepRun,
    SweepSettings,
    load_sweeps,
    parse_lengths,
    store_sweep,
)
from cpconsole.results import sweep_report
from cpconsole.sim.engine import Timing, prefill_seconds

from .simcluster import demo_text


def test_lengths_are_tokens_with_k_as_1024() -> None:
    assert parse_lengths("128k, 8k,32K,131072") == (8192, 32768, 131072)
    for bad in ("", "8k,", "0", "8 k", "-8k", "8g", "1.5k"):
        with pytest.raises(ValueError, match="not a length in tokens"):
            parse_lengths(bad)


def test_server_timing_is_read_in_seconds_and_garbage_is_left_out() -> None:
    header = 'prefill;dur=1234.5;desc="127.0.0.11:8004", cache;desc=hit, db;dur=x, total;dur="10"'
    assert server_timing(header) == {"prefill": 1.2345, "total": 0.01}
    assert server_timing("") == {}


def test_a_point_is_the_median_of_the_answered_requests_and_keeps_the_first_failure() -> None:
    results = [
        RequestResult(None, 200, ttft_s=1.0, e2e_s=2.0, output_tokens=11, prefill_s=0.8),
        RequestResult(None, 200, ttft_s=3.0, e2e_s=4.0, output_tokens=11, prefill_s=2.9),
        RequestResult(None, 200, ttft_s=2.0, e2e_s=3.0, output_tokens=11, prefill_s=1.5),
        RequestResult("timed out after 600 s"),
    ]
    point = SweepPoint.of(8192, results)
    assert (point.sent, point.ok, point.ttft_s, point.prefill_s, point.tpot_s) == (4, 3, 2.0, 1.5, 0.1)
    assert point.handoff_s == pytest.approx(0.2) and point.error == "timed out after 600 s"
    bare = SweepPoint.of(8192, [RequestResult(None, 200, ttft_s=1.0)])  # no proxy in the path: no split
    assert bare.prefill_s is None and bare.handoff_s is None


def run_of(layout: str, started: str, ttfts: dict[int, float]) -> SweepRun:
    points = tuple(SweepPoint(n, 2, 2, t, t * 0.9, t * 0.1, 0.02, prompt_tokens=n) for n, t in ttfts.items())
    model = "/models/DeepSeek-V3.1_w8a8mix_mtp"
    return SweepRun("deepseek", "d" * 64, layout, model, started, SweepSettings(tuple(ttfts), 2), points)


def test_stored_sweeps_come_back_in_order_and_damaged_files_are_skipped(tmp_path: Path) -> None:
    older = run_of("TP16 PCP1 DCP8", "20261201-100000.000", {8192: 0.5, 131072: 40.0})
    newer = run_of("TP16 PCP2 DCP8", "20261202-100000.000", {8192: 0.3, 131072: 21.5})
    for run in (newer, older):
        store_sweep(run, tmp_path)
    (tmp_path / "sweep" / "deepseek" / "20261203-000000.000.json").write_text("{not json")
    (tmp_path / "sweep" / "deepseek" / "20261204-000000.000.json").write_text('{"profile": "deepseek"}')
    assert load_sweeps("deepseek", tmp_path) == [older, newer]


def test_reports_set_the_newest_run_beside_the_earlier_ones_and_the_guide() -> None:
    runs = [
        run_of("TP16 PCP1 DCP8", "20261201-100000.000", {8192: 0.5, 131072: 40.0}),
        run_of("TP16 PCP2 DCP8", "20261202-103000.000", {8192: 0.3, 131072: 21.5}),
    ]
    text = sweep_report(runs, "text")
    head, _, rows = text.split("\n")[:3]
    assert "TP16 PCP2 DCP8" in head and "2 request(s) per length" in head
    assert rows.split() == "length ok TTFT prefill hand-off TPOT TTFT 12-01 10:00 TP16 PCP1 DCP8 guide".split()
    longest = next(line for line in text.split("\n") if line.startswith("128k"))
    assert longest.split() == "128k 2/2 21.5 s 19.4 s 2.15 s 20 ms 40.0 s 20.7 s".split()
    assert "12-02 10:30 TP16 PCP2 DCP8" in text and "guide (20 prompts)" in text  # the chart's legend
    assert "100 ms┤" in text and "1.00 s┤" in text and "\x1b" not in text  # log-scale ticks, no colour codes
    markdown = sweep_report(runs, "markdown")
    assert markdown.startswith("## sweep of deepseek") and "| 128k | 2/2 | 21.5 s |" in markdown
    assert "```text\n" in markdown and "| guide |" in markdown
    assert "guide" not in sweep_report(runs[:1], "markdown")  # PCP off: not the guide's deployment
    data = json.loads(sweep_report(runs, "json"))
    assert data["run"]["layout"] == "TP16 PCP2 DCP8" and data["earlier"][0]["layout"] == "TP16 PCP1 DCP8"
    assert data["reference"]["ttft_s"] == GUIDE.ttft_s == 20.7
    assert SweepRun.from_json(data["run"]) == runs[1]
    assert sweep_report([], "text") == "no sweep stored for this profile yet\n"


def test_the_simulated_prefill_rises_with_length_and_pcp_brings_it_down() -> None:
    """What a sweep on the demo shows, as the simulator defines it (measured figures live in
    benchmarks, not in tests: on a busy machine a wall clock orders nothing)."""
    timing = Timing()
    lengths = [1024, 8192, 32768, 131072]
    on_tp16 = [prefill_seconds(timing, 16, n) for n in lengths]
    assert on_tp16 == sorted(on_tp16) and len(set(on_tp16)) == len(lengths)
    assert all(prefill_seconds(timing, 32, n) < prefill_seconds(timing, 16, n) for n in lengths)  # PCP2 shares it


def test_the_sweep_on_the_demo_with_pcp_on_and_off(tmp_path: Path) -> None:
    """The demo (TP16 PCP2 DCP8 over two nodes) and the same profile with PCP off (TP16 on one
    node): exact prompt lengths, the split from the proxy, both runs kept and set side by side;
    the guide's figure beside the guide's layout only."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    on = tmp_path / "on" / "demo.yaml"
    off = tmp_path / "off" / "demo.yaml"
    for path in (on, off):
        path.parent.mkdir()
    on.write_text(demo_text(tmp_path / "on"))
    off.write_text(
        demo_text(tmp_path / "off")
        .replace("      prefill_context_parallel_size: 2", "      prefill_context_parallel_size: 1")
        .replace("    nodes: [prefill-a, prefill-b]", "    nodes: [prefill-a]")
        .replace('    engine_ids: ["0", "1"]', '    engine_ids: ["0"]')
    )

    def cpconsole(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cpconsole", *args], capture_output=True, text=True, timeout=300, env=env
        )

    lengths = "1k,8k,32k"
    guide = []
    for profile in (on, off):
        try:
            assert cpconsole("up", str(profile)).returncode == 0
            done = cpconsole("sweep", str(profile), "--lengths", lengths, "--repeat", "2", "--json")
            assert done.returncode == 0, done.stderr
            assert [line.split()[1] for line in done.stderr.splitlines()] == ["1k", "8k", "32k"]  # as measured
            guide.append(json.loads(done.stdout)["reference"] is not None)
        finally:
            cpconsole("down", str(profile))
    assert guide == [True, False]  # the guide's figure beside the guide's layout only
    runs = load_sweeps("demo", tmp_path / "state" / "cpconsole")
    assert [r.layout for r in runs] == ["TP16 PCP2 DCP8", "TP16 PCP1 DCP8"]
    for run in runs:
        assert [p.prompt_tokens for p in run.points] == [1024, 8192, 32768]  # as the servers counted them
        assert all(p.ok == p.sent == 2 for p in run.points)
        for p in run.points:  # the proxy's prefill is inside the client's TTFT, the rest is the hand-off
            assert p.prefill_s is not None and p.handoff_s is not None and p.ttft_s is not None
            assert p.prefill_s <= p.ttft_s and p.handoff_s == pytest.approx(p.ttft_s - p.prefill_s, abs=1e-6)
    listed = cpconsole("sweep", str(off), "--list", "--markdown")  # the newest (PCP off) beside PCP on
    assert listed.returncode == 0 and "| 32k | 2/2 |" in listed.stdout and "TTFT " in listed.stdout
    assert listed.stdout.index("TP16 PCP1 DCP8") < listed.stdout.index("TP16 PCP2 DCP8")


async def test_the_console_sweeps_through_the_proxy_and_charts_it_beside_the_earlier_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`w` opens the sweep, `s` + `y` runs one on the live demo; the run is stored and set beside the
    earlier one, in the table and in the chart."""
    from textual_plotext import PlotextPlot

    from cpconsole.core.session import CheckSettings, Session
    from cpconsole.ui.app import ConsoleApp
    from cpconsole.ui.screens.sweep import SweepScreen

    from .simcluster import cluster
    from .test_ui import column, table_of, wait_for

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    c = cluster(tmp_path)
    earlier = run_of("TP16 PCP1 DCP8", "20261201-100000.000", {1024: 0.2, 8192: 0.9})
    store_sweep(dataclasses.replace(earlier, profile=c.plan.profile))
    for name in ("prefill-0", "prefill-1", "decode-0", "proxy"):
        await c.start(name)
    checks = CheckSettings(sweep=SweepSettings((1024, 8192), repeat=1))
    try:
        for name in ("prefill-0", "decode-0"):
            await c.wait_http(name)
        await c.wait_http("proxy", "/healthcheck")
        app = ConsoleApp(Session(c.plan, checks=checks), live=False)
        async with app.run_test(size=(140, 44)) as pilot:
            await pilot.press("w")
            screen = app.screen
            assert isinstance(screen, SweepScreen)
            assert column(table_of(screen, "#sweep-table"), 0) == ["1k", "8k"]  # the stored run, alone
            await pilot.press("s", "y")
            await wait_for(pilot, lambda: len(screen.runs) == 2, shown=lambda: screen.runs)
            table = table_of(screen, "#sweep-table")
            assert column(table, 1) == ["1/1", "1/1"] and column(table, 6)[1] == "900 ms"  # beside the earlier
            assert str(table.columns[6].header).endswith("TP16 PCP1 DCP8")
            assert "guide" in str(table.columns[-1].header)  # the demo is the guide's layout
            chart = screen.query_one("#sweep-chart", PlotextPlot).plt.build()
            assert "TP16 PCP2 DCP8" in chart and "TP16 PCP1 DCP8" in chart and "prompt tokens" in chart
    finally:
        await c.stop_all()
