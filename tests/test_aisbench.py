"""`cpconsole accuracy --aisbench`: AISBench run where the API server runs, against the demo through
cpconsole's proxy, with a stand-in of AISBench 3.1 that keeps the real one's rules
(tests/aisbench_standin; the real one runs in tests/real_vllm). The model config is the profile's,
the score and every item come from AISBench's result files, the API key reaches it by environment
and the config AISBench dumps with the key in it does not stay; without AISBench or its dataset
nothing starts and the message says what to run."""

from __future__ import annotations

import json
from pathlib import Path

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile
from cpconsole.core.smoke.accuracy import load_items
from cpconsole.core.smoke.aisbench import KEY_LINE, model_config

from .aisbench_standin import gsm8k_layout, install
from .aisbench_standin.ais_bench.benchmark.cli.main import lazy_problem
from .conftest import PROFILES
from .simcluster import demo_text
from .test_orchestrate import cpconsole

KEY = "sk-aisbench-test-9d2e"


def profile_with(tmp: Path, tool: Path, cache: Path) -> Path:
    text = demo_text(tmp, extra_env={"AIS_BENCH_DATASETS_CACHE": str(cache)})
    text = text.replace("python: [cpconsole-sim, python]}", f"python: [cpconsole-sim, python], ais_bench: [{tool}]}}")
    profile = tmp / "demo.yaml"
    profile.write_text(text + "api_key:\n  env: CPCONSOLE_TEST_KEY\n")
    return profile


def test_aisbench_runs_where_vllm_runs_and_its_result_files_are_the_score(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CPCONSOLE_TEST_KEY", KEY)
    cache = tmp_path / "cache"
    gsm8k_layout(cache, [(i.question, i.answer) for i in load_items("gsm8k", 5)])
    profile = profile_with(tmp_path, install(tmp_path / "ais"), cache)
    try:
        assert cpconsole("up", profile).returncode == 0
        done = cpconsole(
            "accuracy",
            profile,
            "--aisbench",
            "--dataset",
            "gsm8k",
            "--limit",
            "3",
            "--max-tokens",
            "32",
            "--json",
            timeout=300,
        )
    finally:
        cpconsole("down", profile)
    assert done.returncode == 0, done.stderr
    assert "Current exp folder: " in done.stderr and "write csv to " in done.stderr  # its own lines, as they came
    report = json.loads(done.stdout)
    assert (report["tool"], report["dataset"], report["samples"], report["target"]) == ("aisbench", "gsm8k", 3, "proxy")
    assert [item["id"] for item in report["items"]] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
    assert report["items"][0]["expected"] == load_items("gsm8k", 1)[0].answer
    assert report["items"][0]["text"]  # the model's whole answer, as AISBench recorded it
    # where it ran: its outputs stay; the model config and the one AISBench dumped (the key in both) do not
    (work,) = Path(tmp_path, "run").glob("*/aisbench/*")
    (result,) = work.glob("out/*/results/cpconsole/gsm8k.json")
    assert report["accuracy"] == round(json.loads(result.read_text())["accuracy"], 2)  # AISBench's own score
    assert not list(work.glob("out/*/configs"))
    assert not (work / "models" / "cpconsole_model.py").exists()
    assert not any(KEY.encode() in f.read_bytes() for f in work.rglob("*") if f.is_file())
    listed = cpconsole("accuracy", profile, "--list", "--dataset", "gsm8k")
    assert "aisbench" in listed.stdout and "proxy" in listed.stdout


def test_without_aisbench_or_its_dataset_nothing_starts_and_the_step_is_said(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CPCONSOLE_TEST_KEY", KEY)
    tool = install(tmp_path / "ais")
    profile = profile_with(tmp_path, tool, tmp_path / "empty-cache")
    no_data = cpconsole("accuracy", profile, "--aisbench", "--dataset", "gsm8k")
    assert no_data.returncode == 3, no_data.stderr
    assert "AISBench's gsm8k dataset is not on prefill-a" in no_data.stderr
    assert "gsm8k.zip && unzip gsm8k.zip" in no_data.stderr and "nothing was started" in no_data.stderr
    assert not list(Path(tmp_path, "run").glob("*/aisbench/*/out"))
    profile.write_text(profile.read_text().replace(str(tool), str(tmp_path / "no" / "ais_bench")))
    no_tool = cpconsole("accuracy", profile, "--aisbench")
    assert no_tool.returncode == 3 and "pip install ais-bench-benchmark" in no_tool.stderr, no_tool.stderr
    misuse = cpconsole("accuracy", profile, "--aisbench", "--dataset", "gsm9k")
    assert misuse.returncode == 2 and "did you mean 'gsm8k'" in misuse.stderr, misuse.stderr


def test_the_model_config_is_the_profiles_and_keeps_to_mmengines_lazy_import_rule() -> None:
    """The config imports AISBench, so mmengine parses it lazily: nothing imported may be called
    (an os.environ.get for the key would raise), the key is a literal the script writes in."""
    plan = build_plan(load_profile(PROFILES / "demo.yaml"))
    config = model_config(plan, plan.process("proxy"), 4096)
    assert "model='deepseek_v3'" in config and "host_port=8005" in config and "max_out_len=4096" in config
    assert "host_ip='127.0.0.11'" in config and KEY_LINE in config
    assert lazy_problem(config.replace(KEY_LINE, "        api_key='k',\n")) == ""
    assert lazy_problem("import os\n" + config.replace(KEY_LINE, "        api_key=os.environ.get('K'),\n"))
