"""vLLM 0.13's log line format, so the console reads the simulator's logs like real ones:
`(APIServer pid=42) INFO 11-28 01:02:03 [api_server.py:1351] message`, the prefix in cyan
unless NO_COLOR=1 (vLLM colours it even when the output is a file)."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


class VllmLog:
    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.color = (os.environ.get("NO_COLOR", "") == "") if color is None else color
        self.pid = os.getpid()

    def prefix(self, process: str, pid: int | None = None) -> str:
        text = f"({process} pid={pid or self.pid})"
        return f"\033[0;36m{text}\033[0;0m " if self.color else f"{text} "

    def __call__(self, process: str, level: str, where: str, message: str, *, pid: int | None = None) -> None:
        stamp = time.strftime("%m-%d %H:%M:%S")
        self.write(f"{self.prefix(process, pid)}{level} {stamp} [{where}] {message}\n")

    def api(self, where: str, message: str, level: str = "INFO") -> None:
        self("APIServer", level, where, message)

    def engine(self, where: str, message: str, level: str = "INFO") -> None:
        self("EngineCore_DP0", level, where, message, pid=self.pid + 1)

    def worker(self, name: str, where: str, message: str, level: str = "INFO") -> None:
        self(name, level, where, message, pid=self.pid + 2)

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
