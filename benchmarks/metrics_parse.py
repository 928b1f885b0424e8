"""Parsing vLLM /metrics: cpconsole's reader against prometheus_client's parser, same text, same run.

    .venv/bin/python -m benchmarks.metrics_parse [--rounds 200]

Both read tests/fixtures/vllm/metrics-after-bench.txt (a real vLLM capture); prometheus_client's
families are consumed completely, as a reader that needs every value must.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from benchmarks import timed
from cpconsole.core.telemetry.vllm_metrics import parse_metrics

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/vllm/metrics-after-bench.txt"


def baseline(text: str) -> int:
    return sum(len(family.samples) for family in text_string_to_metric_families(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    text = FIXTURE.read_text()
    base = timed(lambda: baseline(text), rounds)
    ours = timed(lambda: parse_metrics(text), rounds)
    print(f"/metrics parse: {len(text.splitlines())} lines ({len(text) / 1024:.0f} KiB), median of {rounds}")
    print(f"  baseline prometheus_client : {base * 1000:7.3f} ms")
    print(f"  cpconsole parse_metrics    : {ours * 1000:7.3f} ms")
    print(f"  ratio                      : {ours / base:7.1%} of baseline (goal <= 20%)")


if __name__ == "__main__":
    main()
