"""How long the light verbs and the console's first paint take from launch, against the import
of what a profile check needs at all.

    .venv/bin/python -m benchmarks.cold_start [--rounds 7]

Baseline, same run: `python -c "import pydantic, yaml"`. Measured: `cpconsole validate`, `render`,
`plan` and `schema` of the guide's profile and `cpconsole --help`, each a fresh process, median of
the rounds; and the console's first paint: `cpconsole profiles/demo.yaml --read-only` in a tmux
pane of its own (120×40), from launch until the board lists the processes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = str(ROOT / "profiles" / "deepseek-v3.1-cp-1p1d.yaml")
DEMO = str(ROOT / "profiles" / "demo.yaml")


# as an installed tool runs: its bytecode cached (a shell with PYTHONDONTWRITEBYTECODE would make
# cpconsole compile its own modules every time, while pydantic's come compiled from pip)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - started


def first_paint() -> float:
    """Launch to the board listing its processes, as a terminal shows it."""
    tmux = ["tmux", "-L", f"cpconsole-bench-{uuid.uuid4().hex[:8]}"]
    command = f"env -u PYTHONDONTWRITEBYTECODE {sys.executable} -m cpconsole {DEMO} --read-only"
    started = time.perf_counter()
    subprocess.run(
        [*tmux, "-f", "/dev/null", "new-session", "-d", "-s", "c", "-x", "120", "-y", "40", command], check=True
    )
    try:
        while True:
            pane = subprocess.run([*tmux, "capture-pane", "-p", "-t", "c"], capture_output=True, text=True).stdout
            if "decode-0" in pane and "proxy" in pane:
                return time.perf_counter() - started
            if time.perf_counter() - started > 60:
                raise SystemExit(f"the board never showed:\n{pane}")
            time.sleep(0.01)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    cli = [sys.executable, "-m", "cpconsole"]
    cases = {
        "baseline: import pydantic, yaml": [sys.executable, "-c", "import pydantic, yaml"],
        "cpconsole validate": [*cli, "validate", GUIDE],
        "cpconsole render": [*cli, "render", GUIDE],
        "cpconsole plan": [*cli, "plan", GUIDE],
        "cpconsole schema": [*cli, "schema"],
        "cpconsole --help": [*cli, "--help"],
    }
    for argv in cases.values():  # one untimed round: every module's bytecode is written
        timed(argv)
    runs: dict[str, list[float]] = {name: [] for name in [*cases, "console: first paint"]}
    for _ in range(rounds):  # interleaved, so a busy moment touches every case alike
        for name, argv in cases.items():
            runs[name].append(timed(argv))
        runs["console: first paint"].append(first_paint())
    base = statistics.median(runs["baseline: import pydantic, yaml"])
    print(f"median of {rounds}")
    for name, values in runs.items():
        median = statistics.median(values)
        print(f"  {name:<32} {median * 1000:7.0f} ms  {median / base:5.2f} × baseline")


if __name__ == "__main__":
    main()
