"""The built-in accuracy check: answers read as the graders read them, the demo's answers scored
and stored, the profile's minimum gating the exit code, the run beside earlier ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpconsole.core.smoke.accuracy import AccuracyRun, ItemResult, final_number, load_items, same_number
from cpconsole.results import accuracy_report

from .simcluster import demo_text
from .test_orchestrate import cpconsole


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("She sells 9 eggs at $2 each, so she makes 9 * 2 = 18 dollars.\n\\boxed{18}", "18"),
        ("The total is $1,080.", "1080"),
        ("First 3 + 4 = 7, so the answer is \\boxed{1,080} (not 12).", "1080"),
        ("\\boxed{42} then a later guess \\boxed{43.0}", "43"),
        ("Step 1: 5 apples. Step 2: 7 pears. Answer: 12", "12"),
        ("It takes -3.5 degrees", "-3.5"),
        ("I cannot tell.", None),
    ],
)
def test_the_answer_is_read_as_a_grader_reads_it(text: str, number: str | None) -> None:
    assert final_number(text) == number


def test_numbers_compare_as_numbers() -> None:
    assert same_number("18", "18") and same_number("18.00", "18") and not same_number("17", "18")
    assert not same_number(None, "18")


def test_the_shipped_gsm8k_items_are_the_test_splits_first_with_their_final_numbers() -> None:
    items = load_items("gsm8k")
    assert len(items) == 50 and items[0].id == "gsm8k-test-0" and items[0].answer == "18"
    assert items[0].question.startswith("Janet’s ducks lay 16 eggs per day.")
    assert all(item.answer.lstrip("-").replace(".", "", 1).isdigit() for item in items)


def test_the_demo_is_scored_kept_and_gated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    try:
        assert cpconsole("up", profile).returncode == 0
        done = cpconsole("accuracy", profile, "--limit", "6", "--max-tokens", "64", "--json", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr  # no request failed, no minimum set
        run = json.loads(done.stdout)
        assert (run["dataset"], run["tool"], run["samples"], run["reference"]) == ("gsm8k", "cpconsole", 6, None)
        items = load_items("gsm8k", 6)
        assert [i["expected"] for i in run["items"]] == [i.answer for i in items]
        for item in run["items"]:  # each judged by what was read from its own text
            assert item["error"] is None and item["text"]
            assert item["answer"] == final_number(item["text"])
            assert item["correct"] == same_number(item["answer"], item["expected"])
        assert run["accuracy"] == round(100 * sum(i["correct"] for i in run["items"]) / 6, 2)
        assert done.stderr.count("accuracy: ") == 6 and "accuracy: 6/6, " in done.stderr  # progress
        # a profile that asks for 80 %: the simulator's answers are no mathematician's
        gated = profile.read_text() + "accuracy: {gsm8k: {min: 80}}\n"
        profile.write_text(gated)
        below = cpconsole("accuracy", profile, "--limit", "3", "--max-tokens", "64", timeout=120)
        assert below.returncode == 1 and "BELOW the profile's 80 %" in below.stdout.splitlines()[0]
        listed = cpconsole("accuracy", profile, "--list", "--markdown")
        assert listed.returncode == 0 and listed.stdout.count("| gsm8k | ") == 2  # both runs, newest first
        assert cpconsole("accuracy", profile, "--dataset", "gsm9k").returncode == 2
        # as one more smoke check, after an up or an apply: passed at the profile's minimum
        smoke = "smoke:\n  accuracy: {limit: 2, min: MIN, max_tokens: 16}\n"
        text = gated.replace("smoke:\n", smoke.replace("MIN", "0"), 1)
        profile.write_text(text)
        passed = cpconsole("smoke", profile, "--needle", "0", "--json", timeout=120)
        checks = {c["name"]: c for c in json.loads(passed.stdout)["checks"]}
        assert passed.returncode == 0 and checks["accuracy via proxy"]["passed"], passed.stdout
        assert (
            checks["accuracy via proxy"]["detail"].startswith("gsm8k: ")
            and "/2 correct" in checks["accuracy via proxy"]["detail"]
        )
        profile.write_text(text.replace("min: 0,", "min: 100,"))
        failed = cpconsole("smoke", profile, "--needle", "0", timeout=120)
        assert failed.returncode == 1 and "FAIL  accuracy via proxy" in failed.stdout
    finally:
        cpconsole("down", profile)


def test_the_report_keeps_an_answers_escape_sequences_off_the_terminal() -> None:
    """AISBench's predictions are whatever the model wrote: a report prints them inert."""
    run = AccuracyRun("p", "d" * 64, "20261207-000000.000", "gsm8k", "proxy", 16, tool="aisbench")
    run.items = [ItemResult("gsm8k-0", "18", "\x1b]0;owned\x07\x1b[2J", False, "")]
    for fmt in ("text", "markdown"):
        assert "\x1b" not in accuracy_report([run], fmt) and "\x07" not in accuracy_report([run], fmt)
