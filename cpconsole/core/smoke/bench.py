"""`vllm bench serve` runs: the command with the guide's intent (random dataset, its long input,
--save-result) minus its three defects — no `--request-rate 0` (zero requests per second never
sends), the proxy's `--base-url` instead of the default localhost:8000, and `--served-model-name`
from the profile. Run on a node through the transport; the saved JSON is fetched back, stored with
the profile's digest and compared with earlier runs."""

from __future__ import annotations

import dataclasses
import json
import posixpath
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..plan import LaunchPlan, ProcessPlan
from ..remote import RemoteError, ShellTransport
from ..remote.launch import run_dir
from ..remote.scripts import enter_own
from ..render import in_place
from . import store
from .streamed import TAKE_KEY, Marked, hand_over_key, lines_then_marked


@dataclass(frozen=True)
class BenchSettings:
    input_len: int = 1024
    output_len: int = 128
    num_prompts: int = 20
    max_concurrency: int | None = None
    request_rate: float | None = None  # Poisson arrivals per second; None: all at once (vLLM's inf)
    save_detailed: bool = False  # per-request TTFTs, ITLs and start times in the stored JSON
    target: str = "proxy"


@dataclass(frozen=True)
class BenchSummary:
    """The numbers a run is compared by, from vllm bench serve's --save-result JSON."""

    completed: int
    failed: int
    duration_s: float
    request_throughput: float
    output_throughput: float
    mean_ttft_ms: float
    p99_ttft_ms: float
    mean_tpot_ms: float
    p99_tpot_ms: float
    mean_itl_ms: float

    @classmethod
    def from_result(cls, data: dict[str, Any]) -> BenchSummary:
        try:
            return cls(
                completed=int(data["completed"]),
                failed=int(data.get("failed") or 0),
                duration_s=float(data["duration"]),
                request_throughput=float(data["request_throughput"]),
                output_throughput=float(data["output_throughput"]),
                mean_ttft_ms=float(data["mean_ttft_ms"]),
                p99_ttft_ms=float(data["p99_ttft_ms"]),
                mean_tpot_ms=float(data["mean_tpot_ms"]),
                p99_tpot_ms=float(data["p99_tpot_ms"]),
                mean_itl_ms=float(data["mean_itl_ms"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a vllm bench serve result: {exc!r}") from None


@dataclass(frozen=True)
class BenchRun:
    profile: str
    digest: str
    started: str  # ISO time, also the run's id
    settings: dict[str, Any]
    summary: BenchSummary
    result: dict[str, Any]  # the whole saved JSON


def server_process(plan: LaunchPlan) -> ProcessPlan:
    """The process whose command and environment the bench borrows: vLLM is installed there."""
    return next(p for p in plan.processes if p.http_port and p.role != "proxy")


def bench_argv(plan: LaunchPlan, settings: BenchSettings, result_dir: str, result_file: str) -> list[str]:
    server = server_process(plan)
    vllm = list(server.argv[: server.argv.index("serve")])
    model = server.argv[server.argv.index("serve") + 1]
    argv = [
        *vllm,
        "bench",
        "serve",
        "--backend",
        "openai",
        "--base-url",
        plan.process(settings.target).base_url,
        "--model",
        model,
        "--served-model-name",
        plan.model_name,
        "--dataset-name",
        "random",
        "--random-input-len",
        str(settings.input_len),
        "--random-output-len",
        str(settings.output_len),
        "--num-prompts",
        str(settings.num_prompts),
        "--save-result",
        "--result-dir",
        result_dir,
        "--result-filename",
        result_file,
    ]
    if settings.max_concurrency:
        argv += ["--max-concurrency", str(settings.max_concurrency)]
    if settings.request_rate:
        argv += ["--request-rate", str(settings.request_rate)]
    if settings.save_detailed:
        argv.append("--save-detailed")
    return argv


def bench_dir(plan: LaunchPlan) -> str:
    return posixpath.join(posixpath.dirname(run_dir(plan, server_process(plan))), "bench")


RESULT_MARK = "@cpconsole-bench-result"  # the bench's JSON result follows this line of the output


def bench_script(plan: LaunchPlan, settings: BenchSettings, stamp: str, *, keyed: bool = False) -> str:
    """The sh that runs the bench where the API server runs — on its node, or in its container
    with the server's environment — and prints its JSON result after RESULT_MARK. `keyed`: the
    API key waits in KEY_FILE in the node's bench directory (vllm bench sends $OPENAI_API_KEY),
    read once and deleted."""
    server = server_process(plan)
    result_file = f"bench-{stamp}.json"
    bench = (
        f"{shlex.join(bench_argv(plan, settings, '.', result_file))} 2>&1; status=$?\n"
        f"[ -f {result_file} ] && echo {RESULT_MARK} && cat {result_file}\nexit $status\n"
    )
    # the node's bench directory holds the key file, and the results of a bench run on the node
    # (a ~ in it means the node's home, which only the shell knows)
    script = enter_own(bench_dir(plan)) + "\n"
    if keyed:
        script += TAKE_KEY
    if server.container:  # it runs in the container's own /tmp
        where = shlex.quote(f"/tmp/cpconsole-{plan.run_key}-bench")
        bench = f"mkdir -p {where} && cd {where} || exit 97\n{bench}"
    unbuffered = (("PYTHONUNBUFFERED", "1"),)  # progress lines come as printed, not at exit
    return script + in_place(server, bench, more_env=unbuffered, key_env="OPENAI_API_KEY" if keyed else None)


async def run_bench(
    plan: LaunchPlan,
    transport: ShellTransport,
    settings: BenchSettings,
    *,
    stamp: str | None = None,
    api_key: str | None = None,
) -> AsyncIterator[str | BenchRun]:
    """Yield the bench's output lines as they come, then the run with its parsed result."""
    stamp = stamp or store.stamp()
    script = bench_script(plan, settings, stamp, keyed=api_key is not None)
    if api_key is not None:
        await hand_over_key(transport, bench_dir(plan), api_key, "the bench")
    result = None
    async for item in lines_then_marked(transport, script, RESULT_MARK):
        if isinstance(item, Marked):
            result = item.after
        else:
            yield item
    try:
        data = json.loads(result or b"")
    except ValueError as exc:
        raise RemoteError(transport.node, f"the bench printed no result: {exc}") from None
    yield BenchRun(plan.profile, plan.digest, stamp, dataclasses.asdict(settings), BenchSummary.from_result(data), data)


def stored_path(run: BenchRun, root: Path | None = None) -> Path:
    return store.run_path("bench", run.profile, run.started, root)


def store_run(run: BenchRun, root: Path | None = None) -> Path:
    record = {
        "profile": run.profile,
        "digest": run.digest,
        "started": run.started,
        "settings": run.settings,
        "result": run.result,
    }
    return store.save("bench", run.profile, run.started, record, root)


def load_runs(profile: str, root: Path | None = None) -> list[BenchRun]:
    """Every stored run of a profile, oldest first; unreadable ones are skipped."""
    runs = []
    for record in store.records("bench", profile, root):
        try:
            summary = BenchSummary.from_result(record["result"])
            runs.append(
                BenchRun(
                    record["profile"],
                    record["digest"],
                    record["started"],
                    record["settings"],
                    summary,
                    record["result"],
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return runs
