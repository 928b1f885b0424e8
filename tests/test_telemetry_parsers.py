"""npu-smi and vLLM metrics parsers against real captures (explicit expected values), garbage,
and the window math against synthetic scrapes with known answers."""

from __future__ import annotations

import contextlib
import math
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from cpconsole.core.telemetry.npu_smi import NpuChip, ParseError, kv_float, kv_int, parse_info, parse_kv
from cpconsole.core.telemetry.vllm_metrics import MetricsParseError, VllmMetrics, parse_metrics
from cpconsole.core.telemetry.window import MetricsWindow, histogram_quantile, increase

from .conftest import FIXTURES

NPU = FIXTURES / "npu-smi"
VLLM = FIXTURES / "vllm"


def chip(info_chips: tuple[NpuChip, ...], npu: int, die: int = 0) -> NpuChip:
    return next(c for c in info_chips if c.npu_id == npu and c.chip_id == die)


def test_a3_sixteen_chips_with_blank_process_names() -> None:
    info = parse_info((NPU / "vllm-ascend-issue-6085-a3-ascend910-16chip-procs.txt").read_text())
    assert info.version == "25.2.1" and len(info.chips) == 16
    first, second = chip(info.chips, 0, 0), chip(info.chips, 0, 1)
    assert (first.name, first.health, first.power_w, first.temp_c, first.phy_id) == ("Ascend910", "OK", 164.4, 48, 0)
    assert (first.hbm_used_mb, first.hbm_total_mb, first.bus_id) == (26690, 65536, "0000:9D:00.0")
    assert (second.power_w, second.temp_c, second.phy_id, second.hbm_used_mb) == (None, 47, 1, 26457)
    last = chip(info.chips, 7, 1)
    assert (last.phy_id, last.temp_c, last.hbm_used_mb, last.bus_id) == (15, 46, 26455, "0000:83:00.0")
    assert (first.memory_used_mb, first.memory_total_mb, first.aicore_pct) == (0, 0, 0)
    assert len(info.processes) == 16
    assert info.processes[0].__dict__ == {"npu_id": 0, "chip_id": 0, "pid": 3742689, "name": "", "memory_mb": 23631}
    assert info.processes[-1].pid == 3747148 and info.processes[-1].chip_id == 1


def test_a3_idle_with_no_processes_line() -> None:
    info = parse_info((NPU / "youyve-nputop-ascend910-a3-npu-smi-25.2.0.txt").read_text())
    assert len(info.chips) == 4
    assert chip(info.chips, 0, 0).hbm_used_mb == 3133 and chip(info.chips, 1, 1).hbm_used_mb == 10568
    assert chip(info.chips, 1, 0).bus_id == "0000:37:00.0" and chip(info.chips, 1, 0).power_w == 167.1
    assert [(p.npu_id, p.chip_id, p.pid, p.name, p.memory_mb) for p in info.processes] == [
        (1, 1, 990711, "python", 7746)
    ]


def test_a2_with_trailing_spaces_and_a_process() -> None:
    info = parse_info((NPU / "youyve-nputop-910b2c-a2-procs.txt").read_text())
    assert [(c.npu_id, c.name, c.phy_id, c.power_w, c.temp_c, c.hbm_used_mb) for c in info.chips] == [
        (0, "910B2C", None, 88.6, 51, 20701),
        (1, "910B2C", None, 99.6, 50, 20687),
    ]
    assert info.processes[0].name == "python3.8" and info.processes[0].memory_mb == 17400


def test_310p3_with_power_na_and_memory_only() -> None:
    info = parse_info((NPU / "nvtop-issue-421-atlas300i-duo-310p3-partial.txt").read_text())
    seen = [(c.chip_id, c.name, c.power_w, c.temp_c, c.memory_used_mb, c.memory_total_mb) for c in info.chips]
    assert seen == [(0, "310P3", None, 45, 1529, 44280), (1, "310P3", None, 43, 1412, 43693)]
    assert {(c.npu_id, c.hbm_total_mb) for c in info.chips} == {(2, None)}


def test_na_fields_fail_only_themselves() -> None:
    """The 310P3 table with the cells Atlas 200I/310B-class devices print as NA (constructed from
    the real one: bus id, AICore, temperature): those fields are None, the chip still parses."""
    real = (NPU / "nvtop-issue-421-atlas300i-duo-310p3-partial.txt").read_text()
    text = real.replace("| 0000:01:00.0    | 0            1529", "| NA              | NA           1529", 1)
    text = text.replace("| NA           45  ", "| NA           NA  ", 1)
    first, second = parse_info(text).chips
    assert (first.bus_id, first.aicore_pct, first.temp_c) == (None, None, None)
    assert (first.memory_used_mb, first.health) == (1529, "OK")
    assert (second.bus_id, second.temp_c) == ("0000:01:00.0", 43)


def test_910a_warning_ddr_and_hbm_columns() -> None:
    info = parse_info((NPU / "openyuanrong-functionsystem-910a-health-warning.txt").read_text())
    assert {c.health for c in info.chips} == {"Warning"} and info.worst_health == "Warning"
    third = chip(info.chips, 2)
    assert (third.memory_used_mb, third.memory_total_mb, third.hbm_used_mb, third.hbm_total_mb) == (
        1667,
        15137,
        30750,
        32768,
    )
    assert chip(info.chips, 3).memory_total_mb == 15039 and info.processes == ()


def test_elided_listing() -> None:
    info = parse_info((NPU / "arthurchiao-blog-910b1-npu-smi-info-elided.txt").read_text())
    assert [c.npu_id for c in info.chips] == [0, 1, 7]
    assert chip(info.chips, 7).hbm_used_mb == 4174 and chip(info.chips, 1).power_w == 92.1


def test_simulator_output_reads_like_the_real_thing() -> None:
    from cpconsole.sim.npu_smi import Chip, Proc, render_info

    chips = [
        Chip(
            n // 2,
            n % 2,
            n,
            "Ascend910",
            "Alarm" if n == 3 else "OK",
            "-" if n % 2 else "95.5",
            40,
            "0000:9D:00.0",
            7,
            60000 + n,
        )
        for n in range(16)
    ]
    info = parse_info(render_info(chips, [Proc(1, 1, 4242, "", 58000)]))
    assert len(info.chips) == 16 and info.worst_health == "Alarm"
    assert chip(info.chips, 1, 1).hbm_used_mb == 60003 and chip(info.chips, 1, 1).power_w is None
    assert info.processes[0].pid == 4242


def test_wider_columns_and_touching_numbers() -> None:
    text = """+---+
| npu-smi 99.0                   Version: 99.0      |
| NPU     Name                  | Health      | Power(W)      Temp(C)     Hugepages-Usage(page) |
| Chip    Phy-ID                | Bus-Id      | AICore(%)     Memory-Usage(MB)    HBM-Usage(MB)  |
+===+
| 12      Ascend910_9392        | Critical    | 301.25        99          0/0                   |
| 1       25                    | 0000:A1:00.0 | 100          12/34         131072/131072     |
+===+
"""
    (only,) = parse_info(text).chips
    assert (only.npu_id, only.name, only.health, only.power_w, only.phy_id) == (
        12,
        "Ascend910_9392",
        "Critical",
        301.25,
        25,
    )
    assert (only.memory_used_mb, only.memory_total_mb, only.hbm_used_mb, only.hbm_total_mb) == (12, 34, 131072, 131072)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("hello world\n", 1, "not a table row"),
        ("| NPU   Name | Health | Power(W) |\n| 0 910B | OK | 90 40 0 / 0 |\n", 2, "without its second"),
        (
            "| NPU   Name | Health | P |\n| Chip | Bus-Id | A |\n| x 910B | OK | 90 40 0 / 0 |\n| 0 | NA | 0 0 / 0 |\n",
            3,
            "NPU id",
        ),
        ("| 0 910B | OK | 90 40 |\n", 1, "no npu-smi table header"),
        ("", 1, "not `npu-smi info` output"),
    ],
)
def test_garbage_raises_parse_error_with_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_info(text)
    assert caught.value.line == line and words in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.printable + "|+=-/", max_size=400))
def test_arbitrary_text_fails_only_with_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_info(text)


def test_key_value_views() -> None:
    usages = parse_kv((NPU / "yunionio-telegraf-t-usages.txt").read_text())
    assert kv_int(usages, "HBM Capacity(MB)") == 65536 and kv_int(usages, "NPU ID") == 0
    common = parse_kv((NPU / "arthurchiao-blog-910b1-t-common-i1.txt").read_text())
    assert kv_float(common, "NPU Real-time Power(W)") == 93.4 and kv_int(common, "Temperature(C)") == 46
    board = parse_kv((NPU / "yunionio-telegraf-t-board.txt").read_text())
    assert board["PCIe Bus Info"] == "0000:C1:00.0" and board["Software Version"] == "25.5.1"
    with pytest.raises(ParseError):
        parse_kv("no colon here\n")


# ---------------------------------------------------------------- vLLM metrics


def reference(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


@pytest.mark.parametrize(
    "name", ["metrics-after-bench.txt", "metrics-prefill-pd.txt", "metrics-decode-pd.txt", "metrics-dp2.txt"]
)
def test_values_equal_prometheus_clients(name: str) -> None:
    text = (VLLM / name).read_text()
    ref = reference(text)
    parsed = parse_metrics(text)
    model = parsed.model_names[0]
    for engine_id, engine in parsed.engines.items():
        labels = (("engine", engine_id), ("model_name", model))
        assert engine.running == ref[("vllm:num_requests_running", labels)]
        assert engine.waiting == ref[("vllm:num_requests_waiting", labels)]
        assert engine.kv_cache_usage == ref[("vllm:kv_cache_usage_perc", labels)]
        assert engine.prompt_tokens == ref[("vllm:prompt_tokens_total", labels)]
        assert engine.generation_tokens == ref[("vllm:generation_tokens_total", labels)]
        for reason, value in engine.request_success.items():
            assert value == ref[("vllm:request_success_total", tuple(sorted((*labels, ("finished_reason", reason)))))]
        for source, value in engine.prompt_tokens_by_source.items():
            assert value == ref[("vllm:prompt_tokens_by_source_total", tuple(sorted((*labels, ("source", source)))))]
        ttft = engine.histograms["ttft"]
        assert ttft.count == ref[("vllm:time_to_first_token_seconds_count", labels)]
        assert ttft.sum == ref[("vllm:time_to_first_token_seconds_sum", labels)]
        for bound, count in ttft.buckets:
            le = "+Inf" if math.isinf(bound) else str(bound)
            assert count == ref[("vllm:time_to_first_token_seconds_bucket", tuple(sorted((*labels, ("le", le)))))]
        assert set(engine.histograms) >= {"ttft", "itl", "e2e", "queue", "prefill", "decode"}


def test_after_bench_numbers() -> None:
    parsed = parse_metrics((VLLM / "metrics-after-bench.txt").read_text())
    assert parsed.total.request_success["length"] == 27.0
    assert parsed.total.histograms["ttft"].count == 27.0


def test_data_parallel_engines_are_summed() -> None:
    parsed = parse_metrics((VLLM / "metrics-dp2.txt").read_text())
    assert len(parsed.engines) == 2
    assert parsed.total.prompt_tokens == sum(e.prompt_tokens for e in parsed.engines.values())
    assert parsed.total.histograms["ttft"].count == sum(e.histograms["ttft"].count for e in parsed.engines.values())


def test_old_names_fall_back() -> None:
    early = parse_metrics((VLLM / "production-stack-issue-318-vllm-v1-early-partial.txt").read_text())
    assert list(early.engines) == ["0"] and early.total.kv_cache_usage == 0.0
    assert early.model_names == ("Qwen/Qwen2.5-Coder-32B-Instruct",)
    old = parse_metrics(
        'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.25\n'
        'vllm:time_per_output_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 3.0\n'
        'vllm:time_per_output_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4.0\n'
    )
    assert old.total.kv_cache_usage == 0.25 and old.total.histograms["itl"].buckets == [(0.1, 3.0), (math.inf, 4.0)]


def test_garbage_metrics_raise_with_the_line() -> None:
    with pytest.raises(MetricsParseError) as caught:
        parse_metrics('# HELP x\nvllm:num_requests_running{engine="0"} 1\n\x00\xffvllm:num{{{ not prometheus\n')
    assert caught.value.line == 3
    with pytest.raises(MetricsParseError):
        parse_metrics('vllm:num_requests_running{engine="0"} lots\n')


# ---------------------------------------------------------------- windows


def test_increase_across_a_counter_reset() -> None:
    assert increase([10, 15, 20]) == 10
    assert increase([10, 15, 3, 8]) == 5 + 3 + 5  # restarted at 0, then counted 3 and 5 more


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 10.0), (0.5, 60.0), (1.0, 90.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (50 - 10) / 50)
    assert histogram_quantile(0.05, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.99, buckets) == 1.0  # in the +Inf bucket: the highest finite bound
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None


def scrape(
    ttft_counts: list[float], prompt: float, gen: float, drafts: float = 0, draft_tokens: float = 0, accepted: float = 0
) -> VllmMetrics:
    bounds = ["0.1", "0.5", "1.0", "+Inf"]
    lines = [
        f'vllm:prompt_tokens_total{{engine="0",model_name="m"}} {prompt}',
        f'vllm:generation_tokens_total{{engine="0",model_name="m"}} {gen}',
        f'vllm:spec_decode_num_drafts_total{{engine="0",model_name="m"}} {drafts}',
        f'vllm:spec_decode_num_draft_tokens_total{{engine="0",model_name="m"}} {draft_tokens}',
        f'vllm:spec_decode_num_accepted_tokens_total{{engine="0",model_name="m"}} {accepted}',
    ]
    lines += [
        f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="{b}",model_name="m"}} {c}'
        for b, c in zip(bounds, ttft_counts, strict=True)
    ]
    return parse_metrics("\n".join(lines) + "\n")


def test_window_rates_quantiles_and_acceptance() -> None:
    window = MetricsWindow(horizon=60)
    window.add(scrape([100, 100, 100, 100], prompt=1000, gen=500, drafts=10, draft_tokens=30, accepted=20), at=0)
    window.add(scrape([110, 150, 180, 190], prompt=3000, gen=900, drafts=110, draft_tokens=330, accepted=230), at=10)
    assert window.prompt_tokens_per_s == 200 and window.generation_tokens_per_s == 40
    # the window's own observations: 10 under 0.1 s, 40 more under 0.5, 30 under 1, 10 above
    assert window.quantile("ttft", 0.5) == pytest.approx(0.1 + 0.4 * (45 - 10) / 40)
    assert window.acceptance_rate == pytest.approx(210 / 300) and window.mean_acceptance_length == pytest.approx(3.1)
    # the console's own 10 probes (the fastest: one token, nothing before them) left out: 80 real ones remain
    assert window.quantile("ttft", 0.5, without=10) == pytest.approx(0.1 + 0.4 * (40 - 0) / 40)
    assert window.quantile("ttft", 0.5, without=90) is None  # nothing but probes: no figure


def test_window_survives_a_restart_and_forgets_old_scrapes() -> None:
    window = MetricsWindow(horizon=60)
    window.add(scrape([5, 5, 5, 5], prompt=500, gen=50), at=0)
    window.add(scrape([1, 2, 2, 2], prompt=100, gen=10), at=30)  # the server restarted
    assert window.prompt_tokens_per_s == pytest.approx(100 / 30)
    assert window.histogram_increase("ttft") == [(0.1, 1.0), (0.5, 2.0), (1.0, 2.0), (math.inf, 2.0)]
    for at in range(40, 200, 10):
        window.add(scrape([1, 2, 2, 2], prompt=100 + at, gen=10), at=at)
    assert window.span <= 60 + 10 and window.prompt_tokens_per_s == pytest.approx(1.0)


def test_random_scrape_order_never_breaks_the_window() -> None:
    rng = random.Random(7)
    window = MetricsWindow()
    for at in range(20):
        window.add(scrape(sorted(rng.sample(range(100), 4)), prompt=rng.random() * 1000, gen=1), at=at)
    assert window.prompt_tokens_per_s is not None and window.prompt_tokens_per_s >= 0
