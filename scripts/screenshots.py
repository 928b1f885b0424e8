"""Screenshots of the running console, from the demo: `.venv/bin/python scripts/screenshots.py`.

Brings the demo topology up through the console (key `u`), lets the simulator's background load
fill the panels (and, 15 s into serving, the decode's KV transfers start failing: a real line
replayed by the simulator, for the alert history), saves an SVG of every screen, each taken from that screen (board, logs, NPUs,
metrics, plan, prompt pane with an answer, a context-length sweep, an accuracy check, preflight, alert history, the
rank map, the journal, a process's details, help,
the stop confirmation, the profile picker) into screenshots/ (PNGs too when rsvg-convert is installed), then brings
everything down again (`D`, confirmed with `y`). tests/test_screenshots.py checks the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpconsole.core.inventory import listed_profiles, profile_dirs  # noqa: E402
from cpconsole.core.plan import build_plan  # noqa: E402
from cpconsole.core.profile import load_profile_text  # noqa: E402
from cpconsole.core.profile.schema import Profile  # noqa: E402
from cpconsole.core.session import CheckSettings, Session  # noqa: E402
from cpconsole.ui.app import ConsoleApp  # noqa: E402
from cpconsole.ui.picker import PickerApp  # noqa: E402

OUT = ROOT / "screenshots"
SHOTS = (
    "board",
    "logs",
    "npus",
    "metrics",
    "plan",
    "prompt",
    "alerts",
    "ranks",
    "journal",
    "sweep",
    "accuracy",
    "details",
    "help",
    "confirm",
    "preflight",
    "preflight-offer",
    "picker",
)


# a real failure for the alert history: 15 s after the decode serves, its KV transfers stop reaching
# the prefill's node (the simulator replays vllm-ascend#5635's line; see docs/failures.md)
FAULT = (
    "env: {CPCONSOLE_SIM_NODE: 127.0.0.13}",
    "env: {CPCONSOLE_SIM_NODE: 127.0.0.13, CPCONSOLE_SIM_FAULT: kv_connect_timeout@15,"
    " CPCONSOLE_SIM_FAULT_PEER: 127.0.0.11}",
)


async def picker_shot() -> None:
    """`cpconsole` alone: the picker over a jump host's profiles (the demo, the CPU tier's, a broken one)."""
    with tempfile.TemporaryDirectory(prefix="cpconsole-shots-") as tmp:
        work = Path(tmp, "ops")
        (work / "profiles").mkdir(parents=True)
        for name in ("demo.yaml", "cpu-1p1d.yaml"):
            shutil.copy(ROOT / "profiles" / name, work / "profiles" / name)
        (work / "profiles" / "half-written.yaml").write_text("name: demo\nnodes: {a: {host: 127.0.0.1\n")
        dirs = profile_dirs(work, {"XDG_CONFIG_HOME": str(Path(tmp, "config"))})  # nothing of this machine
        picker = PickerApp(listed_profiles(dirs), dirs)
        os.chdir(work)  # as an operator runs it: from the directory holding profiles/
        async with picker.run_test(size=(150, 14)) as pilot:
            for _ in range(300):
                await pilot.pause(0.1)
                if not any(state.startswith("asking") for state in picker.states.values()):
                    break
            await pilot.press("down", "down", "enter")  # the broken one: it says why
            await pilot.pause(0.3)
            picker.save_screenshot("picker.svg", str(OUT))
        os.chdir(ROOT)


def plan_profile(path: Path) -> Profile:
    return load_profile_text(path.read_text(), str(path)).profile


async def main() -> None:
    OUT.mkdir(exist_ok=True)
    # sweeps and prompt history of this run only, not the machine's
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="cpconsole-shots-state-")
    demo = ROOT / "profiles/demo.yaml"
    plan = build_plan(load_profile_text(demo.read_text().replace(*FAULT), str(demo)))
    # the simulator answers to the last token of its budget: a short one keeps the accuracy check quick
    checks = dataclasses.replace(CheckSettings.of(plan_profile(demo)), accuracy_tokens=96)
    app = ConsoleApp(Session(plan, via="console", checks=checks), refresh_s=0.5)
    async with app.run_test(size=(150, 36)) as pilot:
        await pilot.press("u")
        await pilot.pause(0.3)
        app.save_screenshot("preflight-offer.svg", str(OUT))
        await pilot.press("p")  # preflight, then up when it passes
        for _ in range(100):
            await pilot.pause(0.1)
            if app.session.preflight_checks is not None:
                break
        await pilot.pause(0.5)
        app.save_screenshot("preflight.svg", str(OUT))
        for _ in range(600):
            await pilot.pause(0.1)
            views = app.session.orchestrator.views.values()
            if all(v.state == "ready" for v in views):
                break
        await pilot.pause(12)  # background requests: rates, TTFT, HBM move
        # real traffic through the proxy first (a chat turn, then the sweep's 8k–128k prompts), so the
        # board and the metrics screen show it split and by prompt length
        await pilot.press("6", *"In one sentence, what is context parallelism?", "ctrl+r")
        for _ in range(300):
            await pilot.pause(0.1)
            if getattr(app.screen, "last", None) is not None:
                break
        app.save_screenshot("prompt.svg", str(OUT))
        await pilot.press("escape", "w", "s", "y")  # a sweep of 8k–128k prompts through the proxy
        for _ in range(1200):
            await pilot.pause(0.1)
            if getattr(app.screen, "runs", None):
                break
        await pilot.pause(1)
        app.save_screenshot("sweep.svg", str(OUT))
        await pilot.press("escape", "A", "s", "y")  # the built-in accuracy check through the proxy
        for _ in range(1800):
            await pilot.pause(0.1)
            if getattr(app.screen, "runs", None):
                break
        await pilot.pause(1)
        app.save_screenshot("accuracy.svg", str(OUT))
        await pilot.press("escape")
        await pilot.pause(6)  # the proxy's next scrape
        for key, name in (
            ("1", "board"),
            ("2", "logs"),
            ("3", "npus"),
            ("4", "metrics"),
            ("5", "plan"),
        ):
            await pilot.press(key)
            await pilot.pause(1)
            app.save_screenshot(f"{name}.svg", str(OUT))
        for _ in range(240):  # the simulated fault's alert (a bound: a demo already running, started
            # without the fault, is adopted instead and never raises it)
            if any(a.kind == "kv_connect_timeout" for a in app.session.alerts):
                break
            await pilot.pause(0.5)
        else:
            raise SystemExit("the simulated fault never raised its alert: is a demo already running? `down` it first")
        await pilot.press("8")
        await pilot.pause(1)
        app.save_screenshot("alerts.svg", str(OUT))
        for key, name in (("9", "ranks"), ("0", "journal")):
            await pilot.press(key)
            await pilot.pause(1.5)  # the journal is read from the first node
            app.save_screenshot(f"{name}.svg", str(OUT))
        await pilot.press("escape", "1", "enter")  # the first row's details
        await pilot.pause(1)
        app.save_screenshot("details.svg", str(OUT))
        await pilot.press("escape", "question_mark")
        await pilot.pause(0.5)
        app.save_screenshot("help.svg", str(OUT))
        await picker_shot()  # while the demo runs: its row says so
        await pilot.press("escape", "D")
        await pilot.pause(0.5)
        app.save_screenshot("confirm.svg", str(OUT))
        await pilot.press("y")
        await pilot.pause(0.5)
        for _ in range(300):
            await pilot.pause(0.1)
            if not app.session.busy:
                break
        await pilot.press("q")
    if shutil.which("rsvg-convert"):
        for name in SHOTS:
            subprocess.run(
                ["rsvg-convert", "-b", "#000000", "-o", str(OUT / f"{name}.png"), str(OUT / f"{name}.svg")], check=True
            )
    print(f"wrote {', '.join(sorted(p.name for p in OUT.iterdir()))} in {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
