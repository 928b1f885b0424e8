"""The simulated npu-smi and hccn_tool print exactly what the real tools print."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from cpconsole.sim.npu_smi import Chip, Proc, render_info

from .conftest import FIXTURES
from .simcluster import cluster

ROW_1 = re.compile(r"^\| (\d+)\s+(\S+)\s+\| (\S+)\s+\| (\S+)\s+(\d+)\s+(\d+)\s*/ (\d+)\s+\|$")
ROW_2 = re.compile(r"^\| (\d+)\s+(\d+)\s+\| (\S+)\s+\| (\d+)\s+(\d+)\s*/ (\d+)\s+(\d+)\s*/ (\d+)\s+\|$")
PROC = re.compile(r"^\| (\d+)\s+(\d+)\s+\| (\d+)\s+\| (.*?)\s*\| (\d+)\s+\|$")


def values_of(text: str) -> tuple[str, list[Chip], list[Proc]]:
    """Read a real A3 `npu-smi info` just far enough to render it again."""
    lines = text.splitlines()
    version = lines[1].split()[2]
    chips, procs = [], []
    for first, second in itertools.pairwise(lines):
        a, b = ROW_1.match(first), ROW_2.match(second)
        if a and b:
            chips.append(
                Chip(
                    npu=int(a[1]),
                    chip=int(b[1]),
                    phy=int(b[2]),
                    name=a[2],
                    health=a[3],
                    power=a[4],
                    temp=int(a[5]),
                    bus=b[3],
                    aicore=int(b[4]),
                    hbm_used=int(b[7]),
                    hbm_total=int(b[8]),
                    hugepages=(int(a[6]), int(a[7])),
                    memory=(int(b[5]), int(b[6])),
                )
            )
    for line in lines:
        p = PROC.match(line)
        if p:
            procs.append(Proc(int(p[1]), int(p[2]), int(p[3]), p[4], int(p[5])))
    return version, chips, procs


@pytest.mark.parametrize(
    "fixture", ["vllm-ascend-issue-6085-a3-ascend910-16chip-procs.txt", "youyve-nputop-ascend910-a3-npu-smi-25.2.0.txt"]
)
def test_info_layout_is_byte_identical_to_real_a3_output(fixture: str) -> None:
    real = (FIXTURES / "npu-smi" / fixture).read_text()
    version, chips, procs = values_of(real)
    assert len(chips) in (4, 16)
    assert render_info(chips, procs, version) == real.rstrip("\n").replace(" \n", "\n") + "\n"


def npu_smi(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cpconsole.sim", "npu-smi", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=20,
        check=True,
    )
    return done.stdout


async def test_hbm_and_processes_follow_the_sim_servers_on_the_node(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    decode_node = c.plan.node("decode-a").address
    env = {
        "CPCONSOLE_SIM_STATE": str(tmp_path / "state"),
        "CPCONSOLE_SIM_NODE": decode_node,
        "CPCONSOLE_SIM_NPU_HEALTH": "5=Warning",
    }
    _, idle, no_procs = values_of(npu_smi("info", env=env))
    assert len(idle) == 16 and {c.hbm_used for c in idle} == {2870} and no_procs == []
    assert [c.power for c in idle[:2]] == [idle[0].power, "-"] and idle[5].health == "Warning"
    try:
        handle = await c.start("decode-0")
        await c.wait_http("decode-0")
        for _ in range(300):  # the server publishes what it holds a moment after it answers
            _, busy, procs = values_of(npu_smi("info", env=env))
            if procs:
                break
            await asyncio.sleep(0.1)
        assert all(chip.hbm_used > 60000 for chip in busy)
        (pid,) = {p.pid for p in procs}
        assert handle.pid in {parent.pid for parent in psutil.Process(pid).parents()}  # the server under our wrapper
        assert len(procs) == 16
        usage = npu_smi("info", "-t", "usages", "-i", "2", "-c", "1", env=env)
        assert "        HBM Capacity(MB)               : 65536\n" in usage
        assert "        NPU ID                         : 2\n" in usage
    finally:
        await c.stop_all()
    _, after, _ = values_of(npu_smi("info", env=env))
    assert {chip.hbm_used for chip in after} == {2870}  # a dead process drops out


def hccn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cpconsole.sim", "hccn_tool", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CPCONSOLE_SIM_NODE": "127.0.0.11", **(env or {})},
        timeout=20,
    )


def test_hccn_tool_answers_like_the_real_one() -> None:
    real_ping = (FIXTURES / "hccn-tool/arthurchiao-blog-910b-ping-ok.txt").read_text().splitlines()
    assert hccn("-i", "3", "-link", "-g").stdout == "link status: UP\n"
    assert hccn("-i", "3", "-net_health", "-g").stdout == "net health status: Success\n"
    assert hccn("-i", "3", "-ip", "-g").stdout == "ipaddr:29.0.11.3\nnetmask:255.255.0.0\n"
    ping = hccn("-i", "3", "-ping", "-g", "address", "29.0.12.3").stdout.splitlines()
    assert len(ping) == len(real_ping) and ping[-1] == real_ping[-1]
    assert [re.sub(r"[\d.]+", "N", line) for line in ping] == [re.sub(r"[\d.]+", "N", line) for line in real_ping]


def test_hccn_tool_faults() -> None:
    faults = {"CPCONSOLE_SIM_LINK_DOWN": "2", "CPCONSOLE_SIM_NET_FAULT": "4", "CPCONSOLE_SIM_NO_IP": "5"}
    assert hccn("-i", "2", "-link", "-g", env=faults).stdout == "link status: DOWN\n"
    assert hccn("-i", "4", "-net_health", "-g", env=faults).stdout == "net health status: Fault\n"
    no_ip = hccn("-i", "5", "-ip", "-g", env=faults)
    assert no_ip.returncode == 1 and no_ip.stdout == "Get ipconf failed, because no ip was preset there!\n"
    down = hccn("-i", "2", "-ping", "-g", "address", "29.0.12.2", env=faults).stdout
    assert down.endswith("3 packets transmitted, 0 received, 100.00% packet loss\n")
