"""The architecture's import rules, checked: core stays UI-free, the UI never reaches into sim."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

PACKAGE = ROOT / "cpconsole"

# Textual and Rich are made unimportable: core must load and work without them. (httpx pulls
# Rich in for its optional command line when Rich happens to be installed, so "not loaded" alone
# would test httpx's packaging, not our layering.)
IMPORT_EVERY_CORE_MODULE = """
import importlib, importlib.abc, json, pkgutil, sys

class NoUi(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("textual", "rich"):
            raise ImportError(f"{name} is not available to cpconsole.core")
        return None

sys.meta_path.insert(0, NoUi())
import cpconsole.core as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, "cpconsole.core.")]
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "rich"))
print(json.dumps({"modules": names, "ui": loaded}))
"""


def test_core_imports_neither_textual_nor_rich() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_CORE_MODULE], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(done.stdout)
    assert "cpconsole.core.plan" in result["modules"]
    assert "cpconsole.core.orchestrate.orchestrator" in result["modules"]
    assert result["ui"] == []


def test_core_source_never_names_textual_or_rich() -> None:
    for path in (PACKAGE / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in ("textual", "rich") for n in names), path


def imported_packages(folder: Path) -> set[str]:
    """Every cpconsole subpackage imported (absolutely or relatively) by modules in folder."""
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        module_parts = path.relative_to(ROOT).with_suffix("").parts
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = list(module_parts[: len(module_parts) - node.level])
                    names = [".".join([*base, *(node.module.split(".") if node.module else [])])]
                else:
                    names = [node.module or ""]
            else:
                continue
            found.update(".".join(n.split(".")[:2]) for n in names if n.startswith("cpconsole"))
    return found


def test_ui_never_imports_the_simulator() -> None:
    assert "cpconsole.sim" not in imported_packages(PACKAGE / "ui")


def test_core_imports_only_core() -> None:
    assert imported_packages(PACKAGE / "core") <= {"cpconsole.core"}


def test_simulator_and_proxy_import_only_core() -> None:
    for folder in ("sim", "proxy"):
        assert imported_packages(PACKAGE / folder) <= {"cpconsole.core", f"cpconsole.{folder}"}


def test_import_scanner_sees_relative_imports() -> None:
    # the checks above are only worth something if the scanner finds real imports
    assert "cpconsole.core" in imported_packages(PACKAGE / "core")


# What a light verb may load: the profile, the plan, pydantic and YAML; never the machinery of
# the verbs that touch nodes (SSH, HTTP, the orchestrator) nor the console's.
HEAVY = (
    "asyncssh",
    "httpx",
    "textual",
    "rich",
    "psutil",
    "cpconsole.headless",
    "cpconsole.core.orchestrate",
    "cpconsole.core.remote",
    "cpconsole.core.session",
    # the console's modules; ui.keys and ui.keymap (the key table the CLI's help names keys from) are light
    "cpconsole.ui.app",
    "cpconsole.ui.places",
    "cpconsole.ui.screens",
    "cpconsole.ui.widgets",
)
RUN_LIGHT_VERB = """
import contextlib, io, json, sys
from cpconsole.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_light_verbs_load_nothing_of_the_heavy_ones(tmp_path: Path) -> None:
    demo, guide = str(ROOT / "profiles" / "demo.yaml"), str(ROOT / "profiles" / "deepseek-v3.1-cp-1p1d.yaml")
    env = {**os.environ, "HOME": str(tmp_path)}  # the guide's nodes are SSH nodes: no ~/.ssh/config to read here
    light = (
        ["validate", demo],
        ["render", demo],
        ["plan", demo],
        ["render", guide],
        ["plan", guide],
        ["schema"],
        ["--help"],
        ["up", "--help"],
    )
    for argv in light:
        done = subprocess.run(
            [sys.executable, "-c", RUN_LIGHT_VERB, *argv],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env=env,
        )
        result = json.loads(done.stdout)
        assert result["code"] == 0, (argv, done.stderr)
        heavy = [m for m in result["modules"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
        assert heavy == [], (argv, heavy)


def test_the_ui_reads_the_session_view_not_the_orchestrator_or_the_telemetry() -> None:
    """The UI shows a SessionView and sends the session intents; the orchestrator's and the
    telemetry's own objects are not its to touch."""
    for path in (PACKAGE / "ui").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        reached = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
        assert "orchestrator" not in reached and "telemetry" not in reached, path


def test_the_formatter_shapes_every_line() -> None:
    """Code takes the shape `ruff format` gives it; a line too long for it is reshaped, not exempted."""
    marker = "fmt: " + "skip"  # spelt apart so this file does not name it
    exempt = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("cpconsole", "tests", "scripts", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if marker in line
    ]
    assert exempt == []
