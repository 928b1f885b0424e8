"""Preflight of the demo's 3 nodes × 16 chips, against what an operator types by hand on one node.

    .venv/bin/python -m benchmarks.preflight [--rounds 3]

Baseline, same run: the guide's verification loops on one node, one after the other, with the
same (simulated) tools — `npu-smi info`, then `hccn_tool -i N -link -g`, `-net_health -g` and
`-ip -g` for each of the 16 chips. Measured: `cpconsole preflight` of all three nodes — all that,
plus the NPU pings between the chips that talk, ports, containers, disk, versions and the proxy —
through the local transport, in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cpconsole.core.plan import build_plan
from cpconsole.core.preflight import run_preflight, tally
from cpconsole.core.profile import load_profile
from cpconsole.core.remote import LocalTransport, Transport

PROFILE = Path(__file__).resolve().parent.parent / "profiles" / "demo.yaml"


def by_hand(chips: int) -> float:
    hccn = "cpconsole-sim hccn_tool"
    loops = "".join(
        f"{hccn} -i {i} -link -g; {hccn} -i {i} -net_health -g; {hccn} -i {i} -ip -g; " for i in range(chips)
    )
    started = time.perf_counter()
    env = {"CPCONSOLE_SIM_NODE": "127.0.0.11", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    subprocess.run(["sh", "-c", f"cpconsole-sim npu-smi info; {loops}"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


async def preflight() -> tuple[float, int, int]:
    plan = build_plan(load_profile(PROFILE))
    nodes: dict[str, Transport] = {n.name: LocalTransport(n.name) for n in plan.nodes}
    started = time.perf_counter()
    checks = await run_preflight(plan, nodes, model_path=None)
    took = time.perf_counter() - started
    for node in nodes.values():
        await node.close()
    failed, _, passed = tally(checks)
    return took, passed, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    hand, ours = [], []
    for _ in range(rounds):
        hand.append(by_hand(16))
        took, passed, failed = asyncio.run(preflight())
        ours.append(took)
    base, mine = statistics.median(hand), statistics.median(ours)
    print(f"baseline: the guide's loops by hand on 1 node × 16 chips   {base:6.2f} s")
    print(
        f"cpconsole preflight, 3 nodes × 16 chips, + pings and more   {mine:6.2f} s  ({passed} passed, {failed} failed)"
    )
    print(f"ratio: {mine / base:.2f} × the time of one node by hand, for three nodes and more checks")


if __name__ == "__main__":
    main()
