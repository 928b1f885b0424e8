"""Remote-layer benchmarks against a real sshd on loopback. Not timed tests: they print figures
and ratios against a baseline measured in the same run.

    .venv/bin/python -m benchmarks.remote ingest [--lines 1000000] [--ring 100000]
    .venv/bin/python -m benchmarks.remote fanout [--nodes 1 16 64]

ingest: tail a vLLM-like log over SSH into the LogStore, against raw asyncssh `cat` of the same
        file on the same connection settings (the ceiling for any SSH reader).
fanout: `status` of one detached process on each of N nodes (N loopback addresses on one sshd),
        connections already open; T(N) against T(1). sshd listens on at most 16 addresses,
        so N > 16 nodes are served by one sshd per 16.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import posixpath
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from cpconsole.core.remote import LogStore, SpawnSpec, SSHTransport
from cpconsole.core.remote.asyncssh_lib import asyncssh
from cpconsole.core.remote.manifest import Manifest
from cpconsole.core.remote.ssh import CHUNK
from tests.sshd import make_sshd, node_root

VLLM_LINE = (
    "(APIServer pid=4242) INFO 11-28 01:02:03 [loggers.py:{n}] Engine 000: Avg prompt throughput: 1234.5 tokens/s, "
    "Avg generation throughput: 56.7 tokens/s, Running: 1 reqs, Waiting: 0 reqs, GPU KV cache usage: 12.3%\n"
)


def write_log(path: str, lines: int) -> int:
    with open(path, "w") as f:
        for start in range(0, lines, 10_000):
            f.write("".join(VLLM_LINE.format(n=i) for i in range(start, min(lines, start + 10_000))))
    return os.path.getsize(path)


async def raw_cat(options: dict[str, object], host: str, path: str) -> tuple[float, int]:
    async with asyncssh.connect(host, **options) as conn:
        started = time.perf_counter()
        process = await conn.create_process(f"cat {path}", encoding=None)
        newlines = 0
        while chunk := await process.stdout.read(CHUNK):  # the same read size as the transport
            newlines += chunk.count(b"\n")
        return time.perf_counter() - started, newlines


async def ingest(lines: int, ring: int) -> None:
    server = make_sshd(["127.0.0.11"])
    root = node_root()
    try:
        path = posixpath.join(root, "vllm.log")
        size = write_log(path, lines)
        Path(path).chmod(0o644)
        node = SSHTransport(server.node("127.0.0.11", run_dir=root))
        raw_options = node.connect_options() | {"username": server.user}
        base_s, counted = await raw_cat(raw_options, "127.0.0.11", path)
        assert counted == lines
        rss = psutil.Process().memory_info().rss
        store = LogStore(max_lines=ring)
        peak = rss
        started = time.perf_counter()
        async for item in node.tail(path):
            store.feed(item)
            if store.total >= lines:
                break
            if store.total % 50_000 < 500:
                peak = max(peak, psutil.Process().memory_info().rss)
        ours_s = time.perf_counter() - started
        peak = max(peak, psutil.Process().memory_info().rss)
        await node.close()
        print(f"log ingest over SSH: {lines:,} lines, {size / 1e6:.0f} MB, ring {ring:,} lines")
        print(f"  baseline asyncssh cat : {lines / base_s:12,.0f} lines/s  ({size / base_s / 1e6:6.1f} MB/s)")
        print(f"  cpconsole tail+store  : {lines / ours_s:12,.0f} lines/s  ({size / ours_s / 1e6:6.1f} MB/s)")
        print(f"  ratio                 : {base_s / ours_s:12.0%} of baseline (goal >= 50%)")
        print(f"  memory growth         : {(peak - rss) / 1e6:9.1f} MB with {len(store.last(ring)):,} lines held")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(server.dir, ignore_errors=True)


async def fanout(counts: list[int], rounds: int = 20) -> None:
    ips = [f"127.0.1.{i}" for i in range(1, max(counts) + 1)]
    # sshd listens on at most 16 addresses (MAX_LISTEN_SOCKS): one sshd per 16 nodes
    servers = [make_sshd(ips[i : i + 16]) for i in range(0, len(ips), 16)]
    root = node_root()
    nodes = [SSHTransport(server.node(ip, run_dir=root), connect_timeout=20) for server in servers for ip in server.ips]
    try:
        started = time.perf_counter()
        handles = await asyncio.gather(
            *(
                n.spawn_detached(
                    SpawnSpec(posixpath.join(root, n.node, "job"), "#!/bin/sh\nexec sleep 300\n", Manifest("job"))
                )
                for n in nodes
            )
        )
        connect_s = time.perf_counter() - started
        print(f"fan-out: status of one process on each of N nodes ({len(ips)} loopback addresses, {len(servers)} sshd)")
        print(f"  connect + spawn on all {len(ips)} nodes: {connect_s * 1000:.0f} ms")
        timings: dict[int, float] = {}
        for count in counts:
            samples = []
            cpu0 = sum(psutil.Process().cpu_times()[:2])
            for _ in range(rounds):
                t0 = time.perf_counter()
                states = await asyncio.gather(
                    *(n.status(h) for n, h in zip(nodes[:count], handles[:count], strict=True))
                )
                samples.append(time.perf_counter() - t0)
                assert all(s.state == "running" for s in states)
            client_cpu = (sum(psutil.Process().cpu_times()[:2]) - cpu0) / (rounds * count)
            timings[count] = statistics.median(samples)
            ratio = timings[count] / timings[counts[0]]
            print(
                f"  T({count:>2}) median of {rounds}: {timings[count] * 1000:7.1f} ms = {ratio:5.2f} x T({counts[0]});"
                f" {timings[count] / count * 1000:5.2f} ms per node, client CPU {client_cpu * 1000:4.2f} ms per node"
            )
        verdict = "met" if timings[max(counts)] <= 2 * timings[counts[0]] else "NOT met"
        print(f"  goal T({max(counts)}) <= 2 x T({counts[0]}): {verdict}")
        await asyncio.gather(*(n.stop(h, grace=2) for n, h in zip(nodes, handles, strict=True)))
    finally:
        await asyncio.gather(*(n.close() for n in nodes))
        for server in servers:
            server.stop()
            shutil.rmtree(server.dir, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    a = sub.add_parser("ingest")
    a.add_argument("--lines", type=int, default=1_000_000)
    a.add_argument("--ring", type=int, default=100_000)
    b = sub.add_parser("fanout")
    b.add_argument("--nodes", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    tempfile.tempdir = None
    if args.what == "ingest":
        asyncio.run(ingest(args.lines, args.ring))
    else:
        asyncio.run(fanout(args.nodes))


if __name__ == "__main__":
    main()
