"""AISBench, the guide's accuracy tool, run against the deployment where its API server runs (in its
container, as `bench` runs `vllm bench serve`): a model config written from the profile — the guide's
`vllm_api_general_chat` with the served name, the target's host and port, an answer budget that fits
max_model_len and the API key from the environment — the dataset config the guide uses, `--mode
all --dump-eval-details`; the score and every item read back from AISBench's result files, never
from its screen. Facts of AISBench 3.1 (`ais-bench-benchmark` on PyPI) are cited where used."""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..plan import LaunchPlan, NodePlan, ProcessPlan
from ..remote import RemoteError, ShellTransport
from ..remote.launch import run_dir
from ..remote.scripts import enter_own
from ..render import in_place
from . import store
from .accuracy import PROMPT_ROOM, AccuracyRun, ItemResult
from .bench import server_process
from .streamed import TAKE_KEY, Marked, hand_over_key, lines_then_marked

AISBENCH_OUT = 32768  # tokens an answer may take: a reasoning model's AIME answer needs thousands
BATCH = 8  # requests at once (its model config's batch_size), as the built-in check
MODEL = "cpconsole_model"  # the model config's name, found under --config-dir's models/
MODEL_ABBR = "cpconsole"  # its abbr: results/<abbr>/<dataset abbr>.json
INSTALL = "pip install ais-bench-benchmark (where vLLM runs: in its container when it has one)"
OPENCOMPASS = "http://opencompass.oss-cn-shanghai.aliyuncs.com/datasets/data"
RESULT_MARK = "@cpconsole-aisbench-result"
MISSING_MARK = "@cpconsole-aisbench-missing"
QUOTABLE = re.compile(r"[^'\\\x00-\x1f\x7f]+")  # a key that goes between '…' in a Python file as it is


@dataclass(frozen=True)
class AisDataset:
    config: str  # --datasets NAME: configs/datasets/<dir>/NAME.py in AISBench
    path: str  # what that config reads, under <site-packages>/ or $AIS_BENCH_DATASETS_CACHE
    fetch: str  # its README's download step, run in ais_bench/datasets


# the config each dataset's README names for a chat model, zero-shot (aime2024: the guide's)
DATASETS = {
    "aime2024": AisDataset(
        "aime2024_gen_0_shot_chat_prompt",
        "ais_bench/datasets/aime/aime.jsonl",
        f"mkdir -p aime && cd aime && wget {OPENCOMPASS}/aime.zip && unzip aime.zip",
    ),
    "gsm8k": AisDataset(
        "gsm8k_gen_0_shot_cot_chat_prompt",
        "ais_bench/datasets/gsm8k",
        f"wget {OPENCOMPASS}/gsm8k.zip && unzip gsm8k.zip",
    ),
    "math500": AisDataset(
        "math500_gen_0_shot_cot_chat_prompt",
        "ais_bench/datasets/math",
        f"wget {OPENCOMPASS}/math.zip && unzip math.zip",
    ),
    "gpqa": AisDataset(
        "gpqa_gen_0_shot_cot_chat_prompt", "ais_bench/datasets/gpqa", f"wget {OPENCOMPASS}/gpqa.zip && unzip gpqa.zip"
    ),
    "ceval": AisDataset(
        "ceval_gen_0_shot_cot_chat_prompt",
        "ais_bench/datasets/ceval/formal_ceval",
        "mkdir -p ceval/formal_ceval && cd ceval/formal_ceval && wget "
        "https://www.modelscope.cn/datasets/opencompass/ceval-exam/resolve/master/ceval-exam.zip && unzip ceval-exam.zip",
    ),
    "mmlu": AisDataset(
        "mmlu_gen_0_shot_cot_chat_prompt", "ais_bench/datasets/mmlu", f"wget {OPENCOMPASS}/mmlu.zip && unzip mmlu.zip"
    ),
}


def answer_room(shortest_context: int | None) -> int:
    """AISBENCH_OUT, less where the smallest max_model_len leaves less after a question."""
    if shortest_context is None:
        return AISBENCH_OUT
    return max(1, min(AISBENCH_OUT, shortest_context - PROMPT_ROOM))


KEY_LINE = "        api_key=__KEY__,\n"  # the one line the script writes at run time, from $OPENAI_API_KEY


def model_config(plan: LaunchPlan, target: ProcessPlan, max_out_len: int) -> str:
    """AISBench's vllm_api_general_chat (configs/models/vllm_api/) pointed at the target, with
    KEY_LINE where the key goes. The key cannot come from the environment when AISBench reads the
    file: a config that imports AISBench is parsed in mmengine's lazy-import mode, where calling
    anything imported (os.environ.get) raises (mmengine/config/lazy.py, LazyObject.__call__)."""
    fields = {
        "attr": "service",
        "abbr": MODEL_ABBR,
        "path": "",
        "model": plan.model_name,
        "stream": False,
        "request_rate": 0,
        "use_timestamp": False,
        "retry": 2,
        "host_ip": target.address,
        "host_port": target.http_port,
        "url": "",
        "max_out_len": max_out_len,
        "batch_size": BATCH,
        "trust_remote_code": False,
    }
    written = "".join(f"        {name}={value!r},\n" for name, value in fields.items())
    return (
        "from ais_bench.benchmark.models import VLLMCustomAPIChat\n"
        "from ais_bench.benchmark.utils.postprocess.model_postprocessors import extract_non_reasoning_content\n\n"
        "models = [\n    dict(\n        type=VLLMCustomAPIChat,\n"
        f"{written}{KEY_LINE}"
        "        generation_kwargs=dict(temperature=0.01, ignore_eos=False),\n"
        "        pred_postprocessor=dict(type=extract_non_reasoning_content),\n    )\n]\n"
    )


def aisbench_dir(plan: LaunchPlan) -> str:
    return posixpath.join(posixpath.dirname(run_dir(plan, server_process(plan))), "aisbench")


# Where ais_bench's own Python finds a dataset (AISBench's datasets/utils/datasets.py get_data_path:
# $AIS_BENCH_DATASETS_CACHE, else the site-packages directory ais_bench is installed in, joined with
# the config's relative path).
_DATA_ROOT = (
    "import os, ais_bench; "
    "print(os.environ.get('AIS_BENCH_DATASETS_CACHE') or os.path.dirname(os.path.dirname(os.path.abspath(ais_bench.__file__))))"
)


def aisbench_script(
    plan: LaunchPlan,
    node: NodePlan,
    dataset: str,
    target: str,
    limit: int | None,
    max_out_len: int,
    stamp: str,
    *,
    keyed: bool,
) -> str:
    """The sh that runs AISBench where the API server runs and prints, after RESULT_MARK, each
    result file as `NAME SIZE` and its bytes, then `status CODE`. A missing ais_bench or dataset
    prints MISSING_MARK and what, and starts nothing. The model config AISBench dumps into its
    work directory holds the key, as the model config must: both are deleted however the run ends."""
    server, chosen = server_process(plan), DATASETS[dataset]
    tool = node.tools.ais_bench
    argv = [
        *tool,
        "--config-dir",
        ".",
        "--models",
        MODEL,
        "--datasets",
        chosen.config,
        "--mode",
        "all",
        "--dump-eval-details",
        "--work-dir",
        "out",
        *(["--num-prompts", str(limit)] if limit else []),
    ]
    work = f"/tmp/cpconsole-{plan.run_key}-aisbench/{stamp}" if server.container else f"$PWD/{stamp}"
    head, tail = model_config(plan, plan.process(target), max_out_len).split(KEY_LINE)
    body = f"""command -v {shlex.quote(tool[0])} >/dev/null 2>&1 || {{ echo {MISSING_MARK} tool; exit 0; }}
set -- $(sed -n '1s/^#! *//p' "$(command -v {shlex.quote(tool[0])})")
root=$("$@" -c {shlex.quote(_DATA_ROOT)}) || {{ echo {MISSING_MARK} tool; exit 0; }}
[ -e "$root"/{shlex.quote(chosen.path)} ] || {{ echo {MISSING_MARK} data "$root"/{shlex.quote(chosen.path)}; exit 0; }}
work="{work}"
umask 077
mkdir -p "$work/models" && cd "$work" || exit 97
forget='rm -f "$work"/models/{MODEL}.py; rm -rf "$work"/out/*/configs'
trap "$forget" EXIT
cat > models/{MODEL}.py <<'CPCONSOLE_CONFIG'
{head}CPCONSOLE_CONFIG
printf "        api_key='%s',\\n" "${{OPENAI_API_KEY:-}}" >> models/{MODEL}.py
cat >> models/{MODEL}.py <<'CPCONSOLE_CONFIG'
{tail}CPCONSOLE_CONFIG
{shlex.join(argv)} 2>&1
status=$?
eval "$forget"
echo {RESULT_MARK}
for f in "$work"/out/*/results/{MODEL_ABBR}/*.json; do
  [ -f "$f" ] && printf '%s %s\\n' "${{f##*/}}" "$(wc -c < "$f")" && cat "$f"
done
echo "status $status"
"""
    script = enter_own(aisbench_dir(plan)) + "\n"
    if keyed:
        script += TAKE_KEY
    unbuffered = (("PYTHONUNBUFFERED", "1"),)
    return script + in_place(server, body, more_env=unbuffered, key_env="OPENAI_API_KEY" if keyed else None)


def parse_results(after: bytes) -> tuple[dict[str, Any], int | None]:
    """The result files (name → JSON) and ais_bench's exit status, from what follows RESULT_MARK."""
    files: dict[str, Any] = {}
    rest, status = after.lstrip(b"\n"), None
    while rest:
        head, _, rest = rest.partition(b"\n")
        words = head.decode("utf-8", "replace").split()
        if len(words) == 2 and words[0] == "status":
            status = int(words[1]) if words[1].lstrip("-").isdigit() else None
            continue
        if len(words) != 2 or not words[1].isdigit():
            continue
        size = int(words[1])
        files[words[0]] = json.loads(rest[:size])
        rest = rest[size:].lstrip(b"\n")
    return files, status


def _first(value: object) -> object:
    return value[0] if isinstance(value, list) and value else value


def items_of(files: dict[str, Any]) -> list[ItemResult]:
    """Every item of every result file, as `--dump-eval-details` writes them (OpenICLEvalTask's
    format_details: details["i"] = {prompt, origin_prediction, predictions, references, correct},
    the last three a list with one entry per sample drawn: one, unless a config asks for more)."""
    items = []
    for name, data in sorted(files.items()):
        details = data.get("details") if isinstance(data, dict) else None
        if not isinstance(details, dict):
            continue
        abbr = name.removesuffix(".json")
        for index, detail in sorted(details.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else -1):
            if not isinstance(detail, dict):
                continue
            said = _first(detail.get("predictions"))
            correct = detail.get("correct")
            items.append(
                ItemResult(
                    f"{abbr}-{index}",
                    str(_first(detail.get("references")) or ""),
                    None if said in (None, "") else str(said),
                    all(correct) if isinstance(correct, list) and correct else correct is True,
                    str(_first(detail.get("origin_prediction")) or ""),
                )
            )
    return items


class NotStarted(Exception):
    """AISBench or its dataset is not where the API server runs: what to do, nothing was started."""


async def run_aisbench(
    plan: LaunchPlan,
    transport: ShellTransport,
    *,
    dataset: str,
    target: str,
    limit: int | None,
    max_out_len: int,
    api_key: str | None = None,
) -> AsyncIterator[str | AccuracyRun]:
    """AISBench's output lines as they come, then the run read from its result files."""
    stamp = store.stamp()
    node = plan.node(server_process(plan).node)
    script = aisbench_script(plan, node, dataset, target, limit, max_out_len, stamp, keyed=api_key is not None)
    if api_key is not None and not QUOTABLE.fullmatch(api_key):
        raise NotStarted(
            "the API key holds a character AISBench's config file cannot quote (a quote, a backslash or a control character)"
        )
    if api_key is not None:
        await hand_over_key(transport, aisbench_dir(plan), api_key, "AISBench")
    after = None
    async for item in lines_then_marked(transport, script, RESULT_MARK):
        if isinstance(item, Marked):
            after = item.after
        elif item.startswith(MISSING_MARK + " "):
            raise NotStarted(_missing(item.removeprefix(MISSING_MARK + " "), dataset, node))
        else:
            yield item
    files, status = parse_results(after or b"")
    items = items_of(files)
    if not items:
        said = f"ais_bench exited {status}" if status else "ais_bench wrote no result file"
        raise RemoteError(transport.node, f"{said} (its output is above); nothing to score")
    run = AccuracyRun(plan.profile, plan.digest, stamp, dataset, target, max_out_len, tool="aisbench")
    run.items = items
    yield run


def _missing(what: str, dataset: str, node: NodePlan) -> str:
    if what == "tool":
        return f"no ais_bench where vLLM runs on {node.name}: {INSTALL}, or set tools.ais_bench"
    path = what.removeprefix("data ")
    return (
        f"AISBench's {dataset} dataset is not on {node.name} ({path}): in ais_bench/datasets (or "
        f"$AIS_BENCH_DATASETS_CACHE/ais_bench/datasets) run `{DATASETS[dataset].fetch}`"
    )
