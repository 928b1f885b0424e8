"""Install the AISBench stand-in: a site directory holding `ais_bench` and an `ais_bench` script
whose #! line is this Python (pip's console scripts name their interpreter so)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent


def install(root: Path) -> Path:
    """The stand-in under root, with a Python of its own that imports it (as a venv's python
    imports what pip installed there); returns its `ais_bench` script."""
    site = root / "site"
    shutil.copytree(HERE / "ais_bench", site / "ais_bench", dirs_exist_ok=True)
    python = root / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n')
    script = root / "bin" / "ais_bench"
    script.write_text(f"#!{python}\nimport sys\nfrom ais_bench.benchmark.cli.main import main\nsys.exit(main())\n")
    for made in (python, script):
        made.chmod(0o755)
    return script


def gsm8k_layout(cache: Path, items: list[tuple[str, str]]) -> None:
    """GSM8K as AISBench reads it (its README: gsm8k.zip unpacked in ais_bench/datasets): train.jsonl
    and test.jsonl, each answer's last line `#### N` (the items as both splits: only test is asked)."""
    import json

    folder = cache / "ais_bench" / "datasets" / "gsm8k"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"question": q, "answer": f"reasoning\n#### {a}"}) for q, a in items]
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
