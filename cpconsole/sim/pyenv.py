"""`cpconsole-sim python …`: this machine's Python, inside a simulated Ascend software stack —
dist-info records for vllm, vllm-ascend and torch-npu, and a CANN toolkit install.info — so a
node's software versions read the way they do on a real node (importlib.metadata, the toolkit file).

CPCONSOLE_SIM_VERSIONS overrides any of them: "torch-npu=2.6.0,CANN=8.2.RC1" (a missing package: "=").
An installed torch-npu is importable, and fails on import as the real one does where the libraries it
loads are not on LD_LIBRARY_PATH (sim/libs.py)."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

LAYOUT = 2  # what a stack holds: a new layout is made afresh, not taken from an older one
DEFAULTS = {"vllm": "0.13.0", "vllm-ascend": "0.13.0", "torch-npu": "2.7.1.post1", "CANN": "8.3.RC1"}


def versions() -> dict[str, str]:
    found = dict(DEFAULTS)
    for item in os.environ.get("CPCONSOLE_SIM_VERSIONS", "").split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            found[name.strip()] = value.strip()
    return found


def stack(chosen: dict[str, str]) -> Path:
    """A directory with the packages' dist-info and the toolkit, made once per set of versions."""
    key = hashlib.sha256(repr((LAYOUT, sorted(chosen.items()))).encode()).hexdigest()[:12]
    root = Path(tempfile.gettempdir(), f"cpconsole-sim-stack-{os.getuid()}-{key}")
    if (root / "done").exists():
        return root
    site = root / "site"
    site.mkdir(parents=True, exist_ok=True)
    for name, version in chosen.items():
        if name == "CANN" or not version:
            continue
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if chosen.get("torch-npu"):
        (site / "torch_npu").mkdir(exist_ok=True)
        (site / "torch_npu" / "__init__.py").write_text("from cpconsole.sim.libs import check_import\ncheck_import()\n")
    if chosen.get("CANN"):
        toolkit = root / "ascend-toolkit" / "latest" / "aarch64-linux"
        toolkit.mkdir(parents=True, exist_ok=True)
        (toolkit / "ascend_toolkit_install.info").write_text(
            f"package_name=Ascend-cann-toolkit\nversion={chosen['CANN']}\narch=aarch64\nos=linux\n"
        )
    (root / "done").write_text("")
    return root


def main(argv: list[str]) -> int:
    root = stack(versions())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "site"), env.get("PYTHONPATH")]))
    env["ASCEND_TOOLKIT_HOME"] = str(root / "ascend-toolkit" / "latest")
    os.execve(sys.executable, [sys.executable, *argv], env)
