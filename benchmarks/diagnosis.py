"""Reading failures from log lines while serving: LogWatch.feed against what every line already costs
(LogStore: bytes split into lines, made terminal-safe, kept in the ring), same lines, same run.

    .venv/bin/python -m benchmarks.diagnosis [--lines 200000] [--rounds 5] [--failing 0.001] [--batch 20000]

Lines: the real captured healthy vLLM logs (tests/fixtures/vllm: start-up, PD serving, bench), repeated,
with a share of real failure lines (cpconsole/sim/real_failures.yaml) mixed in. Prints lines/s of
each and the share of one core the watch takes at 20,000 lines/s.
"""

from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

from benchmarks import timed
from cpconsole.core.diagnosis import LogWatch
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile
from cpconsole.core.remote.logstore import LogStore
from cpconsole.core.remote.types import TailChunk
from cpconsole.sim.faults import real_failures

ROOT = Path(__file__).resolve().parent.parent
LOGS = ("startup.log", "pd-example-connector.log", "bench.log")


def corpus(count: int, failing: float) -> list[str]:
    healthy = [line for name in LOGS for line in (ROOT / "tests/fixtures/vllm" / name).read_text().splitlines()]
    failures = [str(e["line"]) for e in real_failures()]
    rng = random.Random(7)
    cycle = itertools.cycle(healthy)
    return [rng.choice(failures) if rng.random() < failing else next(cycle) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--failing", type=float, default=0.001, help="share of failure lines")
    parser.add_argument("--batch", type=int, default=20_000, help="lines read at once")
    args = parser.parse_args()
    lines = corpus(args.lines, args.failing)
    data = ("\n".join(lines) + "\n").encode()
    plan = build_plan(load_profile(ROOT / "profiles/deepseek-v3.1-cp-1p1d.yaml"))

    def store() -> None:
        LogStore(len(lines)).feed(TailChunk(0, data))

    def watch() -> None:
        watcher = LogWatch(plan)
        for start in range(0, len(lines), args.batch):  # what the session reads at once: one second's lines
            watcher.feed("decode-0", lines[start : start + args.batch], serving=True, at=0.0)

    base = timed(store, args.rounds)
    ours = timed(watch, args.rounds)
    print(
        f"{len(lines):,} lines in batches of {args.batch:,}, {args.failing:.1%} failure lines, median of {args.rounds}"
    )
    print(f"  baseline LogStore.feed   {len(lines) / base:>12,.0f} lines/s")
    print(f"  LogWatch.feed            {len(lines) / ours:>12,.0f} lines/s  ({ours / base:.2f}× the store's cost)")
    print(f"  at 20,000 lines/s the watch takes {20_000 / (len(lines) / ours):.1%} of a core")


if __name__ == "__main__":
    main()
