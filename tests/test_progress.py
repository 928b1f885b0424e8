"""What the board's "why / last line" column takes from a log: the last line that says something."""

from __future__ import annotations

from cpconsole.core.orchestrate.progress import last_news

from .conftest import FIXTURES


def test_access_log_lines_are_never_the_last_news() -> None:
    # a real vLLM log: after its start-up come the health polls and a served completion
    lines = (FIXTURES / "vllm" / "startup.log").read_text().splitlines()
    served = [n for n, line in enumerate(lines) if '- "GET /health HTTP/1.1" 200' in line]
    assert served, "the capture has access-log lines"
    before_access = lines[: served[0] + 1]
    assert last_news(before_access) == lines[served[0] - 1]
    stats = "(APIServer pid=1) INFO 12-07 10:00:01 [loggers.py:123] Engine 000: Avg prompt throughput: 0.0 tokens/s"
    access = '(APIServer pid=1) INFO:     127.0.0.1:57438 - "POST /v1/completions HTTP/1.1" 200 OK'
    assert last_news([stats, access, access]) == stats
    assert last_news([access]) is None  # nothing but requests: the board keeps what it had
    error = "(APIServer pid=1) ERROR 12-07 10:00:02 [core.py:1] EngineCore failed"
    assert last_news([access, error]) == error
