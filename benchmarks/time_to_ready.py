"""Time from `up` to ready on the demo, against one instance's own load.

    .venv/bin/python -m benchmarks.time_to_ready [--load 8] [--rounds 3] [--profile profiles/demo.yaml]

Each round, through the local transport, in-process, with every simulated load taking `--load`
seconds:
  baseline   `up -p decode-0`: one instance alone, to healthy (no proxy, no probe)
  one by one the instances one after the other (prefill to healthy, then the rest): how `up`
             brought a deployment up before instances started side by side
  cpconsole  `up`: every instance at once, then the proxy, then the probe
Everything is stopped between runs. Medians of the rounds, and each as a multiple of the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from cpconsole.core.orchestrate import Orchestrator
from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport, Transport

DEMO = Path(__file__).resolve().parent.parent / "profiles" / "demo.yaml"


def plan_of(profile: Path, load: float, run_dir: str) -> LaunchPlan:
    text = profile.read_text()
    text = text.replace('CPCONSOLE_SIM_STARTUP_S: "4"', f'CPCONSOLE_SIM_STARTUP_S: "{load}"')
    text = text.replace('CPCONSOLE_SIM_BACKGROUND_RPS: "0.5"', 'CPCONSOLE_SIM_BACKGROUND_RPS: "0"')
    if "  run_dir: ~/.cache/cpconsole\n" in text:
        text = text.replace("  run_dir: ~/.cache/cpconsole\n", f"  run_dir: {run_dir}\n", 1)
    else:
        text = text.replace("  env:\n", f"  run_dir: {run_dir}\n  env:\n", 1)
    return build_plan(load_profile_text(text, str(profile)))


async def timed(plan: LaunchPlan, bring_up: Callable[[Orchestrator], Awaitable[bool]]) -> float:
    transports: dict[str, Transport] = {n.name: LocalTransport(n.name) for n in plan.nodes}
    orch = Orchestrator(plan, transports)
    try:
        started = time.perf_counter()
        if not await bring_up(orch):
            raise SystemExit(f"up failed: { {n: (v.state, v.reason) for n, v in orch.views.items()} }")
        return time.perf_counter() - started
    finally:
        await orch.down()
        await orch.close()
        for transport in transports.values():
            await transport.close()


async def one_by_one(orch: Orchestrator) -> bool:
    prefill = [p.name for p in orch.plan.processes if p.role == "prefill"]
    return await orch.up(prefill) and await orch.up()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", type=float, default=8.0, help="seconds each simulated model load takes (the demo)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=DEMO, help="a profile with local nodes and a decode-0")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"baseline": [], "one by one": [], "cpconsole": []}
    with tempfile.TemporaryDirectory(prefix="cpconsole-ttr-") as run_dir:
        plan = plan_of(args.profile, args.load, run_dir)
        for _ in range(args.rounds):
            runs["baseline"].append(asyncio.run(timed(plan, lambda o: o.up(["decode-0"]))))
            runs["one by one"].append(asyncio.run(timed(plan, one_by_one)))
            runs["cpconsole"].append(asyncio.run(timed(plan, lambda o: o.up())))
    base = statistics.median(runs["baseline"])
    simulated = "CPCONSOLE_SIM_STARTUP_S" in args.profile.read_text()
    loads = f"simulated loads of {args.load:g} s" if simulated else "real loads"
    print(f"{plan.profile}: {loads}, median of {args.rounds}")
    for name, values in runs.items():
        median = statistics.median(values)
        print(
            f"  {name:<11} {median:6.2f} s  {median / base:4.2f} × baseline   (runs: {', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
