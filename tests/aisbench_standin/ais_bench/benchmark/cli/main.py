"""The `ais_bench` CLI of AISBench 3.1, as far as cpconsole uses it, keeping the real one's rules (its
cli/argument_parser.py, cli/config_manager.py, datasets/utils/datasets.py, tasks/openicl_eval.py,
summarizers/default.py): the same arguments and refusals, configs looked up in --config-dir's
models/ (then its own), data under $AIS_BENCH_DATASETS_CACHE or its site-packages directory, and
under --work-dir a directory named by the time with the config dumped into configs/ (the API key
in it), predictions/, results/<model abbr>/<dataset abbr>.json and summary/."""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

# the datasets this stand-in knows: --datasets name → (its abbr, the data under the cache, reader)
KNOWN = {
    "gsm8k_gen_0_shot_cot_chat_prompt": ("gsm8k", "ais_bench/datasets/gsm8k"),
    "aime2024_gen_0_shot_chat_prompt": ("aime2024", "ais_bench/datasets/aime/aime.jsonl"),
}
PROMPTS = {  # the configs' prompt templates
    "gsm8k": 'Answer the following question.The last line of the response should follow this format: "answer:$ANSWER" '
    "(without quotes), where ANSWER is a number. Let's think step by step.\n\nQuestion: {question}",
    "aime2024": "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
}


def log(level: str, text: str) -> None:
    print(f"{time.strftime('%m/%d %H:%M:%S')} - AISBench - {level} - {text}", flush=True)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a benchmark task")
    parser.add_argument("config", nargs="?")
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("-m", "--mode", default="all", choices=["all", "infer", "eval", "viz", "perf", "perf_viz"])
    parser.add_argument("-w", "--work-dir", default=None)
    parser.add_argument("--config-dir", default="configs")
    parser.add_argument("--num-prompts", type=int, default=None)
    parser.add_argument("--dump-eval-details", action="store_true")
    return parser.parse_args()


def find_config(config_dir: str, kind: str, name: str) -> Path:
    found = sorted(Path(config_dir, kind).rglob(f"{name}.py"))
    if len(found) != 1:
        raise SystemExit(
            "The provided pattern matches 0 or more than one config. Please verify your pattern and try again. \n"
            f"No matches found for pattern: {name}"
        )
    return found[0]


BUILTINS = {"dict", "list", "tuple", "set", "str", "int", "float", "bool", "range", "len"}


def lazy_problem(text: str) -> str:
    """mmengine's rule for a config that imports a module not built in (Config._is_lazy_import):
    it is parsed in lazy-import mode, where calling anything it imported raises RuntimeError
    (config/lazy.py, LazyObject.__call__); only built-ins like dict() may be called."""
    tree = ast.parse(text)
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    lazy = any(name.split(".")[0] not in sys.stdlib_module_names for name in imported)
    for node in ast.walk(tree):
        if lazy and isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in BUILTINS):
            return "RuntimeError()"
    return ""


def data_root() -> Path:
    default = Path(__file__).resolve().parents[3]  # the site-packages directory ais_bench is in
    return Path(os.environ.get("AIS_BENCH_DATASETS_CACHE") or default)


def items(abbr: str, path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        raise FileExistsError(f"Dataset path: {path} is not exist! Please check section ...")
    if abbr == "gsm8k":  # GSM8KDataset.load reads both splits, train first
        (path / "train.jsonl").read_text()
    file = path / "test.jsonl" if path.is_dir() else path
    rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    if abbr == "gsm8k":
        return [(r["question"], r["answer"].split("#### ")[1].replace(",", "")) for r in rows]
    return [(r["question"], str(r["answer"])) for r in rows]


def ask(model: dict[str, Any], prompt: str) -> str:
    body = {
        "model": model["model"],
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": model["max_out_len"],
        "temperature": model["generation_kwargs"]["temperature"],
        "stream": False,
    }
    headers = {"Content-Type": "application/json"}
    if model.get("api_key"):
        headers["Authorization"] = f"Bearer {model['api_key']}"
    url = f"http://{model['host_ip']}:{model['host_port']}/v1/chat/completions"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=600) as answer:
        return str(json.load(answer)["choices"][0]["message"]["content"])


def extracted(abbr: str, text: str) -> str:
    if abbr == "gsm8k":  # gsm8k_postprocess
        numbers = re.findall(r"\-?\d+\.\d+|\-?\d+", text.split("Question:")[0])
        return numbers[-1] if numbers else "NULL"
    boxed = re.findall(r"\\boxed\{([^{}]*)\}", text)
    return boxed[-1] if boxed else ""


def main() -> int:
    args = parse()
    if not args.models or not args.datasets:
        raise SystemExit("--models and --datasets are needed without a config file")
    found = find_config(args.config_dir, "models", args.models[0])
    problem = lazy_problem(found.read_text())
    if problem:
        raise SystemExit(
            f"[TMAN-CFG-001]invaild syntax in config content. Config file {found} contain invaild syntax: {problem}"
        )
    namespace: dict[str, Any] = {}
    exec(found.read_text(), namespace)  # as mmengine's Config does
    model = dict(namespace["models"][0])
    if args.datasets[0] not in KNOWN:
        raise SystemExit(f"No matches found for pattern: {args.datasets[0]}")
    abbr, relative = KNOWN[args.datasets[0]]
    exp = Path(args.work_dir or "outputs/default", time.strftime("%Y%m%d_%H%M%S"))
    log("INFO", f"Current exp folder: {exp}")
    (exp / "configs").mkdir(parents=True, exist_ok=True)
    dumped = {k: (v if isinstance(v, (str, int, float, bool, dict)) else repr(v)) for k, v in model.items()}
    (exp / "configs" / f"{exp.name}_{os.getpid()}.py").write_text(f"models = [{dumped!r}]\n")  # the key included
    try:
        dataset = items(abbr, data_root() / relative)
    except FileExistsError as exc:
        log("ERROR", str(exc))
        return 1
    dataset = dataset[: args.num_prompts] if args.num_prompts else dataset
    predictions = [ask(model, PROMPTS[abbr].format(question=q)) for q, _ in dataset]
    (exp / "predictions" / model["abbr"]).mkdir(parents=True, exist_ok=True)
    said = "".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in enumerate(predictions))
    (exp / "predictions" / model["abbr"] / f"{abbr}.jsonl").write_text(said)
    details: dict[str, dict[str, Any]] = {}
    for index, ((question, answer), text) in enumerate(zip(dataset, predictions, strict=True)):
        pred = extracted(abbr, text)
        details[str(index)] = {  # one entry per sample drawn (one here) in the last three
            "prompt": [{"role": "HUMAN", "prompt": PROMPTS[abbr].format(question=question)}],
            "origin_prediction": text,
            "predictions": [pred],
            "references": [answer],
            "correct": [pred == answer],
        }
    accuracy = 100 * sum(all(d["correct"]) for d in details.values()) / len(details) if details else 0.0
    result: dict[str, Any] = {"accuracy": accuracy}
    if args.dump_eval_details:
        result |= {"details": details, "type": "GEN"}
    (exp / "results" / model["abbr"]).mkdir(parents=True, exist_ok=True)
    (exp / "results" / model["abbr"] / f"{abbr}.json").write_text(json.dumps(result, indent=4))
    summary = exp / "summary" / f"summary_{exp.name}.csv"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(f"dataset,version,metric,mode,{model['abbr']}\n{abbr},-,accuracy,gen,{accuracy:.2f}\n")
    log("INFO", f"write csv to {summary.resolve()}")
    return 0
