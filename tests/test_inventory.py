"""Finding profiles: `cpconsole ls` and the picker list the profiles of ./profiles and the user's
config directory, with whether each deployment runs (from the manifests on its nodes); a broken
profile is listed with why, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from textual.widgets import DataTable, Static

from cpconsole.core.inventory import listed_profiles, profile_dirs
from cpconsole.ui.picker import PickerApp

from .simcluster import demo_text
from .test_orchestrate import cpconsole
from .test_ui import wait_for


def jump_host(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working directory with profiles/ (the demo, a broken one) and a config directory with a
    second demo of another name; the environment that points there."""
    work, config = tmp_path / "work", tmp_path / "config"
    (work / "profiles").mkdir(parents=True)
    (config / "cpconsole" / "profiles").mkdir(parents=True)
    (work / "profiles" / "demo.yaml").write_text(demo_text(tmp_path / "one"))
    (work / "profiles" / "broken.yaml").write_text("name: [demo\n")
    (work / "profiles" / "notes.md").write_text("not a profile\n")
    second = demo_text(tmp_path / "two").replace("\nname: demo\n", "\nname: second\n")
    (config / "cpconsole" / "profiles" / "second.yaml").write_text(second)
    return work, {**os.environ, "XDG_CONFIG_HOME": str(config)}


def ls(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cpconsole", "ls", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_ls_lists_both_places_with_what_runs_and_why_a_profile_is_broken(tmp_path: Path) -> None:
    work, env = jump_host(tmp_path)
    demo = work / "profiles" / "demo.yaml"
    try:
        assert cpconsole("up", demo).returncode == 0
        done = ls(work, env, "--json")
        assert done.returncode == 0, done.stderr
        rows = {Path(r["path"]).name: r for r in json.loads(done.stdout)}
        assert list(rows) == ["broken.yaml", "demo.yaml", "second.yaml"]  # ./profiles first, then the config's
        assert (rows["demo.yaml"]["name"], rows["demo.yaml"]["nodes"], rows["demo.yaml"]["processes"]) == ("demo", 3, 4)
        assert rows["demo.yaml"]["state"] == "4/4 running"
        assert rows["second.yaml"]["state"] == "not running"  # its own run directories: nothing there
        assert rows["broken.yaml"]["state"] == "invalid" and "broken.yaml:1:7" in rows["broken.yaml"]["problem"]
        text = ls(work, env, "--offline").stdout
        assert text.splitlines()[0].split() == ["PROFILE", "NAME", "NODES", "PROCESSES", "STATE"]
        assert "not asked" in text and "broken.yaml: " in text and "Traceback" not in text
    finally:
        cpconsole("down", demo)


def test_ls_without_profiles_says_where_it_looked(tmp_path: Path) -> None:
    done = ls(tmp_path, {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "none")})
    assert (
        done.returncode == 1 and "no profiles (*.yaml) in " in done.stderr and str(tmp_path / "profiles") in done.stderr
    )


def test_without_a_terminal_cpconsole_alone_prints_its_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cpconsole"], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    assert done.returncode == 2 and "usage: cpconsole" in done.stdout


async def test_the_picker_fills_in_what_runs_and_opens_the_chosen_profile(tmp_path: Path) -> None:
    work, env = jump_host(tmp_path)
    dirs = profile_dirs(work, env)
    app = PickerApp(listed_profiles(dirs), dirs)
    async with app.run_test(size=(140, 20)) as pilot:
        table = app.query_one(DataTable)
        demo, second = work / "profiles" / "demo.yaml", tmp_path / "config" / "cpconsole" / "profiles" / "second.yaml"
        await wait_for(pilot, lambda: app.states[demo] == app.states[second] == "not running", shown=lambda: app.states)
        assert str(table.get_cell(str(demo), "state")) == "not running"
        assert app.states[work / "profiles" / "broken.yaml"] == "invalid"
        await pilot.press("enter")  # the first row: the broken one, which says why and stays
        why = app.query_one("#why", Static)
        await wait_for(pilot, lambda: "broken.yaml:1:7" in str(why.content))
        await pilot.press("down", "enter")
    assert app.return_value == demo
