"""Why a vLLM process failed, read from its last log lines: cause, and what to do about it.
Patterns: vllm-ascend-facts.md §6 (vLLM 0.13 / vllm-ascend messages)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..profile.rules import MOONCAKE_RANDOM_BASE


@dataclass(frozen=True)
class FailureCause:
    kind: str
    summary: str
    hint: str
    evidence: str


_PATTERNS: tuple[tuple[str, re.Pattern[str], str, str], ...] = (
    (
        "npu_oom",
        re.compile(r"NPU out of memory"),
        "NPU out of memory",
        "lower --gpu-memory-utilization or --max-num-batched-tokens, and check no other job holds HBM (npu-smi info)",
    ),
    (
        "kv_cache_too_small",
        re.compile(r"No available memory for the cache blocks|estimated maximum model length is \d+"),
        "KV cache too small for max_model_len",
        "raise gpu_memory_utilization or lower max_model_len (the log names the largest length that fits)",
    ),
    (
        "hccl_timeout",
        re.compile(r"EI0006|Getting socket times out|wait socket establish timeout"),
        "HCCL link set-up timed out (EI0006)",
        "ranks started too far apart or an NPU link is down: start all ranks together, raise HCCL_CONNECT_TIMEOUT, "
        "check `hccn_tool -i N -link -g` (cpconsole preflight)",
    ),
    (
        "zmq_port",
        re.compile(r"ZMQError: Address already in use"),
        "a kv-transfer port is already in use",
        "see zmq_hint: which of its causes fits depends on the process's kv ports",
    ),
    (
        "port_in_use",
        re.compile(r"\[Errno 98\] Address already in use|address already in use", re.I),
        "the HTTP port is already in use",
        "another server listens on this host and port: find it with `ss -ltnp`",
    ),
    (
        "model_missing",
        re.compile(
            r"(?i)(no such file or directory|does not exist|is not a valid model).*(model|config\.json|weight)|"
            r"(model|config\.json|weight).*(no such file or directory|does not exist)"
        ),
        "the model path is missing",
        "model.path must exist on every node (or on the shared directory)",
    ),
    (
        "peer_lost",
        re.compile(r"master .* is gone|disconnected from the TCPStore|DistNetworkError|Connection reset by peer"),
        "lost its peer ranks",
        "another rank of this instance died or never started: check the other nodes' logs",
    ),
    (
        "engine_dead",
        re.compile(r"EngineCore encountered a fatal error|EngineDeadError"),
        "the engine died",
        "see the traceback above; the API server cannot serve without its engine",
    ),
    (
        "engine_start",
        re.compile(r"EngineCore failed to start|Engine core initialization failed"),
        "the engine failed to start",
        "see the root cause above in the log",
    ),
    (
        "bad_arguments",
        re.compile(r"vllm serve: error:|AssertionError|ValueError"),
        "vLLM refused its arguments",
        "fix the flag named in the error (cpconsole validate catches the known ones)",
    ),
)


def zmq_hint(kv_ranges: list[tuple[int, int]], chips: int) -> str:
    """Why a ZMQ port was taken. Mooncake's transport picks random ports in [20000, 20000 +
    chips·1000): kv ports in there collide now and then. Outside it, the same error has other
    causes (vLLM's get_open_port / shm_broadcast race, two ranks starting at once, a stale process)."""
    end = MOONCAKE_RANDOM_BASE + chips * 1000 - 1
    inside = [(a, b) for a, b in kv_ranges if a <= end and b >= MOONCAKE_RANDOM_BASE]
    if inside:
        a, b = inside[0]
        return (
            f"its kv ports {a}-{b} lie inside Mooncake's random port range {MOONCAKE_RANDOM_BASE}-{end}: "
            f"move kv_port to {end + 1} or above (cpconsole validate warns)"
        )
    return (
        "its kv ports are outside Mooncake's random range, so not that: a process of an earlier run may still "
        "hold the port (`ss -ltnp`, `cpconsole status`), two ranks may have started at once on one host, or "
        "vLLM's get_open_port raced another process for a free port (restart the instance)"
    )


def explain(lines: list[str], kv_ranges: list[tuple[int, int]], chips: int) -> FailureCause | None:
    """classify, with the hints that depend on the process's own ports."""
    cause = classify(lines)
    if cause is not None and cause.kind == "zmq_port":
        return replace(cause, hint=zmq_hint(kv_ranges, chips))
    return cause


def classify(lines: list[str]) -> FailureCause | None:
    """The most specific known cause found in the lines (patterns are in priority order)."""
    for kind, pattern, summary, hint in _PATTERNS:
        for line in reversed(lines):
            if pattern.search(line):
                return FailureCause(kind, summary, hint, line.strip()[:300])
    return None


# vLLM's prefix: "(APIServer pid=826) INFO 01-21 02:34:16 [api_server.py:260] " or, from uvicorn
# under it, "(APIServer pid=826) INFO:     "
_VLLM_PREFIX = re.compile(
    r"^\s*(?:\([\w.:-]+ pid=\d+\)\s*)?"
    r"(?:(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)"
    r"(?::\s+|\s+\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}(?:\.\d+)?\s+(?:\[[^\]]*\]\s*)?))?"
)


def message_of(line: str) -> str:
    """A log line's message without vLLM's prefix (process tag and pid, level, timestamp,
    [file:line]), runs of spaces folded; warnings and errors keep their level word."""
    match = _VLLM_PREFIX.match(line)
    level = match.group("level") if match else None
    text = " ".join(line[match.end() if match else 0 :].split())
    return f"{level} {text}" if level in ("WARNING", "ERROR", "CRITICAL") else text


# uvicorn access-log lines of health and metrics polls (ours, a load balancer's): noise, not news
POLL_LINE = re.compile(r'"GET /(?:health|healthcheck|metrics|load|version|v1/models) HTTP/1\.1" \d{3}')

_WAITING = re.compile(r"failed to connect to \[?([^\]\s]+)\]?:(\d+)")
_LOADING = re.compile(r"Loading safetensors checkpoint shards:\s+(\d+)%")


def progress(line: str) -> str | None:
    """A start-up milestone the line announces, in a few words."""
    if match := _LOADING.search(line):
        return f"loading weights {match.group(1)}%"
    if "GPU KV cache size:" in line or "KV cache size:" in line:
        return "KV cache allocated: " + line.split("KV cache size:", 1)[1].split("tokens", 1)[0].strip() + " tokens"
    if "Starting vLLM API server" in line or "Starting vLLM server on" in line:
        return "API server starting"
    if "Application startup complete." in line:
        return "HTTP up"
    if "headless multiproc executor" in line:
        return "headless: joining the master"
    if match := _WAITING.search(line):
        return f"waiting for the master {match.group(1)}:{match.group(2)}"
    return None


def waiting_for_peer(line: str) -> str | None:
    match = _WAITING.search(line)
    return f"{match.group(1)}:{match.group(2)}" if match else None
