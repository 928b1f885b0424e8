"""CPCONSOLE_SIM_FAULT: a real failure replayed with the real lines (real_failures.yaml), at start-up
or while serving, on a chosen rank.

  CPCONSOLE_SIM_FAULT=KIND@start-up[#RANK]   fail during start-up with KIND's line
  CPCONSOLE_SIM_FAULT=KIND@SECONDS[#RANK]    SECONDS after serving starts: KIND's line; the engine
                                             dies of it, unless KIND recurs without killing it
                                             (KV transfers failing, shm_broadcast waits, 0 tok/s),
                                             then again every CPCONSOLE_SIM_FAULT_EVERY_S (2)

KIND is a `kind` of real_failures.yaml. #RANK moves the line's rank, chip and worker to that rank
(its chip: RANK modulo the node's chips). The line's addresses become CPCONSOLE_SIM_FAULT_PEER's
(the other end of a link, e.g. the prefill's node for a decode), else this node's."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REAL_FAILURES = Path(__file__).with_name("real_failures.yaml")
# what vLLM-Ascend survives: a request fails or waits, the engine serves on
RECURRING = frozenset(
    {"kv_transfer_failed", "kv_connect_timeout", "kv_wait_timeout", "shm_broadcast_stall", "no_progress"}
)


@cache
def real_failures() -> tuple[dict[str, Any], ...]:
    return tuple(yaml.safe_load(REAL_FAILURES.read_text()))


def real_line(kind: str) -> str:
    """The first real line of a kind (ValueError naming the kinds there are, when it is unknown)."""
    for excerpt in real_failures():
        if excerpt["kind"] == kind:
            return str(excerpt["line"])
    kinds = sorted({str(e["kind"]) for e in real_failures()})
    raise ValueError(f"CPCONSOLE_SIM_FAULT: unknown kind {kind!r}; one of {', '.join(kinds)}")


_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")


def placed(line: str, rank: int | None, chips: int, address: str) -> str:
    """The line as the given rank (None: as it was) would print it, naming `address` for every address."""
    line = _IPV4.sub(address, line)
    if rank is None:
        return line
    device = rank % chips
    line = re.sub(r"\brank\[\d+\]", f"rank[{rank}]", line)
    line = re.sub(r"\[rank\d+\]", f"[rank{rank}]", line)
    line = re.sub(r"\[Rank \d+\]", f"[Rank {rank}]", line)
    line = re.sub(r"RankID:\d+", f"RankID:{rank}", line)
    line = re.sub(r"\(NPU \d+;", f"(NPU {device};", line)
    line = re.sub(r"\bDevice:\d+", f"Device:{device}", line)
    line = re.sub(r"chipId:\d+", f"chipId:{device}", line)
    return re.sub(r"\bWorker_DP(\d+)_TP\d+", rf"Worker_DP\1_TP{device}", line)


@dataclass(frozen=True)
class Fault:
    kind: str
    at_startup: bool
    after_s: float
    line: str
    every_s: float

    @property
    def recurring(self) -> bool:
        return self.kind in RECURRING

    @classmethod
    def from_env(cls, address: str, chips: int) -> Fault | None:
        spec = os.environ.get("CPCONSOLE_SIM_FAULT", "")
        if not spec:
            return None
        match = re.fullmatch(r"(\w+)@(start-up|\d+(?:\.\d+)?)(?:#(\d+))?", spec)
        if match is None:
            raise ValueError(f"CPCONSOLE_SIM_FAULT={spec!r}: expected KIND@start-up or KIND@SECONDS, then #RANK")
        kind, when, rank = match.groups()
        peer = os.environ.get("CPCONSOLE_SIM_FAULT_PEER") or address
        line = placed(real_line(kind), int(rank) if rank is not None else None, chips, peer)
        every = float(os.environ.get("CPCONSOLE_SIM_FAULT_EVERY_S", "2") or 2)
        return cls(kind, when == "start-up", 0.0 if when == "start-up" else float(when), line, every)


def write_plog(line: str) -> None:
    """The fault as CANN also records it: a line in the process's plog file,
    $ASCEND_PROCESS_LOG_PATH/debug/plog/plog-PID_TIME.log (CANN's log directory, by default
    $HOME/ascend/log; CANN's format `[ERROR] MODULE(PID,NAME):DATE-TIME.ms.us [file:line][tid]…`).
    Only where ASCEND_PROCESS_LOG_PATH is set: a simulator never writes into the machine's home."""
    base = os.environ.get("ASCEND_PROCESS_LOG_PATH")
    if not base:
        return
    now = time.time()
    folder = Path(base, "debug", "plog")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"plog-{os.getpid()}_{time.strftime('%Y%m%d%H%M%S', time.localtime(now))}.log"
    stamp = time.strftime("%Y-%m-%d-%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}.000"
    with (folder / name).open("a") as plog:
        plog.write(f"[ERROR] RUNTIME({os.getpid()},python3):{stamp} [sim][{os.getpid()}]{line}\n")
