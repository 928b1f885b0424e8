"""Requests kept through day-two changes: a simulated 1P2D under steady streaming traffic while it is
changed the ways an operator changes it.

    .venv/bin/python -m benchmarks.day_two [--clients 8] [--steady-s 10]

The demo's layout with two decode instances (decode, decode2) and a spare node (decode-c), on
loopback 127.0.9.x, `--clients` streaming clients through cpconsole's proxy the whole time (each
request: 8 tokens). Phases, one after the other, each the requests that *started* during it:
  steady      nothing changes (`--steady-s` seconds): the baseline
  restart     `cpconsole restart decode2` (drained first)
  kill        decode2's server SIGKILLed, then `up` brings it back; requests that started more than a
              second after the kill are counted apart ("after 1 s")
  scale out   the profile gains decode3 on the spare node; `apply`
  flag        every decode instance's max_num_seqs changed; `apply` (one at a time, drained)
  scale in    decode3 removed again; `apply`
Per phase: requests started in it, requests that failed in it (a stream cut by the kill fails then,
whenever it started), TTFT p50 / p99 (client-measured, core/smoke/client.py). Goals: 0 failed
for restart, scale and flag; after a kill, none failed that started a second later.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from cpconsole.core.smoke.client import percentile, stream_request

DEMO = Path(__file__).resolve().parent.parent / "profiles" / "demo.yaml"
PREFIX = "127.0.9"


def profile_text(run: Path, decodes: tuple[str, ...], max_num_seqs: int = 4) -> str:
    """The demo with nodes decode-a, -b, -c and a decode instance on each node named in `decodes`."""
    text = DEMO.read_text().replace("127.0.0.", f"{PREFIX}.")
    text = text.replace("  env:\n    HCCL_BUFFSIZE", f"  run_dir: {run}/run\n  env:\n    HCCL_BUFFSIZE", 1)
    text = text.replace('CPCONSOLE_SIM_STARTUP_S: "4"', 'CPCONSOLE_SIM_STARTUP_S: "1"')
    node = next(line for line in text.splitlines() if line.startswith("  decode-a: {host: "))
    extra = [
        node.replace("decode-a", f"decode-{n}").replace(f"{PREFIX}.13", f"{PREFIX}.{last}")
        for n, last in (("b", 14), ("c", 15))
    ]
    text = text.replace(node, "\n".join([node, *extra]), 1)
    start = text.index("\n  decode:\n")
    block = text[start : text.index("\nproxy:", start)]
    blocks = []
    for index, name in enumerate(decodes):
        node_name = f"decode-{'abc'[index]}"
        blocks.append(
            block.replace("\n  decode:\n", f"\n  {name}:\n", 1)
            .replace("nodes: [decode-a]", f"nodes: [{node_name}]")
            .replace('engine_ids: ["3"]', f'engine_ids: ["{3 + index}"]')
            .replace("max_num_seqs: 4", f"max_num_seqs: {max_num_seqs}")
        )
    return text.replace(block, "".join(blocks), 1)


@dataclass
class Traffic:
    url: str
    model: str
    clients: int
    results: list[tuple[float, float, bool, float | None]] = field(default_factory=list)  # started, ended, ok, ttft
    errors: list[tuple[float, str]] = field(default_factory=list)  # (started, what the client saw)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, most: int = 20000, seconds: float = 900) -> None:
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(trust_env=False, timeout=60) as http:

            async def one() -> None:
                while not self.stop.is_set() and len(self.results) < most and time.monotonic() < deadline:
                    started = time.monotonic()
                    done = await stream_request(http, self.url, model=self.model, prompt="day two", max_tokens=8)
                    self.results.append((started, time.monotonic(), done.ok, done.ttft_s))
                    if done.error:
                        self.errors.append((time.monotonic(), done.error))

            await asyncio.gather(*(one() for _ in range(self.clients)))

    def phase(self, since: float, until: float) -> tuple[int, int, float | None, float | None]:
        """Requests started in the window, those of all that failed in it (a stream cut by a kill
        fails when it is cut, whenever it started), TTFT p50 / p99 of the window's good ones."""
        started = [r for r in self.results if since <= r[0] < until]
        failed = sum(not ok for _, ended, ok, _ in self.results if since <= ended < until)
        ttfts = [t for _, _, ok, t in started if ok and t is not None]
        return len(started), failed, percentile(ttfts, 0.5), percentile(ttfts, 0.99)


async def cpconsole(*args: str) -> None:
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cpconsole", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await asyncio.wait_for(done.communicate(), 600)
    if os.environ.get("DAY_TWO_VERBOSE"):
        print(f"--- cpconsole {' '.join(args[:1])}\n{err.decode()}", file=sys.stderr)
    if done.returncode:
        raise SystemExit(f"cpconsole {' '.join(args)} failed ({done.returncode}): {err.decode()[-500:]}")


def server_of(run: Path, process: str) -> int:
    wrapper = int(next(run.glob(f"run/*/{process}/pid")).read_text().split()[0])
    return next(
        c.pid for c in psutil.Process(wrapper).children(recursive=True) if "cpconsole.sim" in " ".join(c.cmdline())
    )


async def main(clients: int, steady_s: float) -> None:
    run = Path(tempfile.mkdtemp(prefix="cpconsole-day-two-"))
    profile = run / "demo.yaml"
    profile.write_text(profile_text(run, ("decode", "decode2")))
    os.environ["XDG_STATE_HOME"] = str(run / "state")
    await cpconsole("up", str(profile))
    traffic = Traffic(f"http://{PREFIX}.11:8005", "deepseek_v3", clients)
    running = asyncio.create_task(traffic.run())
    phases: list[tuple[str, float, float]] = []
    kill_at = 0.0

    async def phase(name: str, action: Awaitable[object]) -> None:
        began = time.monotonic()
        await action
        await asyncio.sleep(2)  # requests under the changed layout count to the phase
        phases.append((name, began, time.monotonic()))

    async def kill_and_back() -> None:
        nonlocal kill_at
        os.kill(server_of(run, "decode2-0"), signal.SIGKILL)
        kill_at = time.monotonic()
        await asyncio.sleep(3)
        await cpconsole("restart", str(profile), "decode2")

    try:
        await phase("steady", asyncio.sleep(steady_s))
        await phase("restart", cpconsole("restart", str(profile), "decode2"))
        await phase("kill", kill_and_back())
        profile.write_text(profile_text(run, ("decode", "decode2", "decode3")))
        await phase("scale out", cpconsole("apply", str(profile), "--yes"))
        profile.write_text(profile_text(run, ("decode", "decode2", "decode3"), max_num_seqs=8))
        await phase("flag", cpconsole("apply", str(profile), "--yes"))
        profile.write_text(profile_text(run, ("decode", "decode2"), max_num_seqs=8))
        await phase("scale in", cpconsole("apply", str(profile), "--yes"))
    finally:
        traffic.stop.set()
        await running
        await cpconsole("down", str(profile))

    def ms(value: float | None) -> str:
        return f"{value * 1000:.0f}" if value is not None else "-"

    print(f"{'phase':<10} {'requests':>8} {'failed':>6} {'TTFT p50 ms':>11} {'TTFT p99 ms':>11}")
    for name, began, ended in phases:
        count, failed, p50, p99 = traffic.phase(began, ended)
        print(f"{name:<10} {count:>8} {failed:>6} {ms(p50):>11} {ms(p99):>11}")
        seen = sorted({error for at, error in traffic.errors if began <= at < ended})  # when they failed
        for error in seen[:3]:
            print(f"{'':<10} {'':>8} {'':>6}  {error[:100]}")
        if name == "kill":
            late = sum(not ok for start, _, ok, _ in traffic.results if kill_at + 1.0 <= start < ended)
            print(f"{'':<10} {'':>8} {late:>6}  failed of those started more than 1 s after the kill")
    print(f"{len(traffic.results)} requests in all, {clients} clients")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--steady-s", type=float, default=10.0)
    options = parser.parse_args()
    asyncio.run(main(options.clients, options.steady_s))
