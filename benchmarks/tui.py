"""Console benchmarks on the running demo. Not timed tests: they print figures and ratios against a
baseline measured in the same run.

    .venv/bin/python -m benchmarks.tui idle [--seconds 60] [--settle 65]
    .venv/bin/python -m benchmarks.tui flood [--rate 20000] [--presses 40]

idle:  CPU used by `cpconsole demo.yaml` in tmux over N seconds while the demo runs and nothing
       changes but the pollers; baseline: a bare Textual app (one label) in tmux, same N seconds.
flood: key-press latency on the logs screen (F toggles follow: a status redraw) while a writer
       appends vLLM-like lines to the decode's log at --rate lines/s; baseline: the same presses
       with no writer. Also how many of the written lines reached the view.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from cpconsole.core.orchestrate import Orchestrator
from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport
from cpconsole.core.remote.launch import run_dir
from cpconsole.core.session import Session
from cpconsole.ui.app import ConsoleApp
from tests.simcluster import demo_text

BARE_APP = """
from textual.app import App
from textual.widgets import Label
class Bare(App):
    def compose(self):
        yield Label("idle")
Bare().run()
"""
LINE = "(APIServer pid=4242) INFO 11-28 01:02:03 [loggers.py:{n}] Engine 000: Avg prompt throughput: 0.0 tokens/s\n"


@contextlib.contextmanager
def running_demo(tmp: Path) -> Iterator[tuple[Path, LaunchPlan]]:
    profile = tmp / "demo.yaml"
    profile.write_text(demo_text(tmp))
    plan = build_plan(load_profile_text(profile.read_text()))

    async def act(up: bool) -> None:
        transports = {n.name: LocalTransport(n.name) for n in plan.nodes}
        orchestrator = Orchestrator(plan, transports)
        ok = await (orchestrator.up() if up else orchestrator.down())
        await orchestrator.close()
        await asyncio.gather(*(t.close() for t in transports.values()))
        if not ok:
            raise SystemExit("the demo did not come up")

    asyncio.run(act(up=True))
    try:
        yield profile, plan
    finally:
        asyncio.run(act(up=False))


def cpu_in_tmux(command: str, seconds: float, settle: float = 5.0) -> tuple[float, float]:
    """CPU seconds the command's Python process used over `seconds` (after `settle` to start up),
    and what the programs it ran (npu-smi and the like) used, from its children's counters."""
    server = ["tmux", "-L", "cpconsole-bench", "-f", "/dev/null"]
    subprocess.run([*server, "new-session", "-d", "-s", "b", "-x", "120", "-y", "40", command], check=True)
    try:
        time.sleep(settle)
        pane_pid = int(
            subprocess.run(
                [*server, "list-panes", "-F", "#{pane_pid}"], check=True, capture_output=True, text=True
            ).stdout.split()[0]
        )
        pane = psutil.Process(pane_pid)  # the shell tmux started, or the program it exec'd
        app = next(p for p in [pane, *pane.children(recursive=True)] if "python" in p.name())

        def used() -> tuple[float, float]:
            times = app.cpu_times()
            return times.user + times.system, times.children_user + times.children_system

        before = used()
        time.sleep(seconds)
        after = used()
        return after[0] - before[0], after[1] - before[1]
    finally:
        subprocess.run([*server, "kill-server"], capture_output=True)


def idle(seconds: float, settle: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, running_demo(Path(tmp)) as (profile, _):
        console, tools = cpu_in_tmux(f"{sys.executable} -m cpconsole {profile} --read-only", seconds, settle)
    bare, _ = cpu_in_tmux(f"{sys.executable} -c '{BARE_APP}'", seconds, settle)
    print(f"idle over {seconds:.0f} s after {settle:.0f} s of settling (demo up, no traffic, pollers running):")
    print(f"  baseline: bare Textual app   {bare:6.2f} CPU s  = {100 * bare / seconds:5.2f} % of a core")
    print(f"  cpconsole board              {console:6.2f} CPU s  = {100 * console / seconds:5.2f} % of a core")
    print(f"  (programs it ran: npu-smi    {tools:6.2f} CPU s  — the simulator's npu-smi is Python, not C)")
    print(
        f"  ratio                        {console / bare if bare else float('inf'):6.1f} × baseline (goal: ≤ 1 % of a core)"
    )


WRITER = """
import sys, time
path, rate = sys.argv[1], int(sys.argv[2])
line = {line!r}
batch, n, started = max(1, rate // 100), 0, time.perf_counter()
with open(path, "a") as f:
    try:
        while True:
            f.write("".join(line.format(n=n + i) for i in range(batch)))
            f.flush()
            n += batch
            ahead = n / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
    except KeyboardInterrupt:
        print(n)
"""


def start_writer(path: Path, rate: int) -> subprocess.Popen[str]:
    """Append LINE at `rate` lines/s in 10 ms batches, from another process (no GIL shared)."""
    code = WRITER.format(line=LINE)
    return subprocess.Popen([sys.executable, "-c", code, str(path), str(rate)], stdout=subprocess.PIPE, text=True)


async def press_latencies(app: ConsoleApp, pilot, presses: int) -> list[float]:  # type: ignore[no-untyped-def]
    latencies = []
    for _ in range(presses):
        started = time.perf_counter()
        await pilot.press("F")
        latencies.append(time.perf_counter() - started)
        await pilot.pause(0.05)
    return latencies


async def flood_async(plan: LaunchPlan, rate: int, presses: int) -> None:
    session = Session(plan, read_only=True)
    app = ConsoleApp(session, refresh_s=0.5)
    decode_log = Path(run_dir(plan, plan.process("decode-0"))).expanduser() / "log"
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2", "right_square_bracket", "right_square_bracket", "right_square_bracket")
        screen = app.screen
        assert getattr(screen, "process", None) == "decode-0", screen
        await pilot.pause(1.0)
        quiet = await press_latencies(app, pilot, presses)
        shown_before = screen._seen.get("decode-0", 0)  # type: ignore[attr-defined]
        started = time.perf_counter()
        writer = start_writer(decode_log, rate)
        await pilot.pause(1.0)
        busy = await press_latencies(app, pilot, presses)
        writer.send_signal(signal.SIGINT)
        written = int(writer.communicate()[0])
        elapsed = time.perf_counter() - started
        await pilot.pause(2.0)  # let the tail and the view catch up
        shown = screen._seen.get("decode-0", 0) - shown_before  # type: ignore[attr-defined]
        dropped = screen.dropped  # type: ignore[attr-defined]
    p = statistics.quantiles
    print(f"key-press latency on the logs screen, {presses} presses each:")
    print(
        f"  baseline: no writer          p50 {1000 * statistics.median(quiet):6.1f} ms  p95 {1000 * p(quiet, n=20)[-1]:6.1f} ms"
    )
    print(
        f"  {written / elapsed:,.0f} lines/s streaming   p50 {1000 * statistics.median(busy):6.1f} ms  "
        f"p95 {1000 * p(busy, n=20)[-1]:6.1f} ms"
    )
    print(f"  ratio p50                    {statistics.median(busy) / statistics.median(quiet):6.1f} × baseline")
    print(f"lines written {written:,}; read by the view {shown:,}; dropped by the ring {dropped:,}")


def flood(rate: int, presses: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, running_demo(Path(tmp)) as (_, plan):
        asyncio.run(flood_async(plan, rate, presses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    idle_parser = sub.add_parser("idle")
    idle_parser.add_argument("--seconds", type=float, default=60.0)
    # a console left open for hours: past the first minute, uptimes no longer tick every second
    idle_parser.add_argument("--settle", type=float, default=65.0, help="seconds before measuring")
    flood_parser = sub.add_parser("flood")
    flood_parser.add_argument("--rate", type=int, default=20_000)
    flood_parser.add_argument("--presses", type=int, default=40)
    args = parser.parse_args()
    if args.what == "idle":
        idle(args.seconds, args.settle)
    else:
        flood(args.rate, args.presses)


if __name__ == "__main__":
    main()
