"""What a vLLM log line says of start-up progress, and the line's message without vLLM's prefix."""

from __future__ import annotations

import re

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
# any uvicorn access-log line (`127.0.0.1:57438 - "POST /v1/completions HTTP/1.1" 200 OK`): a request
# was served — the logs screen shows them; the board's last line wants what tells the operator more
ACCESS_LINE = re.compile(r':\d+ - "[A-Z]+ \S+ HTTP/[\d.]+" \d{3}')


def last_news(lines: list[str]) -> str | None:
    """The last line that is not an access-log line (engine stats, a warning, an error), if any."""
    return next((line for line in reversed(lines) if not ACCESS_LINE.search(line, 0, 300)), None)


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
