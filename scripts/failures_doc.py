"""docs/failures.md from the catalogue and the real lines: `.venv/bin/python scripts/failures_doc.py`.

Causes in cpconsole/core/diagnosis/catalogue.py (in priority order), each with the real lines of
cpconsole/sim/real_failures.yaml it was written from and tested on. tests/test_diagnosis.py checks
the file is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpconsole.core.diagnosis import CAUSES  # noqa: E402
from cpconsole.sim.faults import real_failures  # noqa: E402

DOC = ROOT / "docs" / "failures.md"

HEAD = """# Failures cpconsole names

What the console and `status` say when a vLLM-Ascend process fails at start-up or while serving:
the cause, where (node, rank, chip, peer — mapped onto the profile), and what to do. Each cause is
one row of `cpconsole/core/diagnosis/catalogue.py`, tried in this order (a root cause before what it
causes on other ranks); the lines under it are real, verbatim from public issue threads
(`cpconsole/sim/real_failures.yaml`), and every one is named right by the tests. Lines marked
*held out* were set aside while the patterns were written. The simulator replays any of them:
`CPCONSOLE_SIM_FAULT=KIND@start-up` or `KIND@SECONDS` after serving starts, `#RANK` to place it
(`cpconsole/sim/faults.py`).

While serving, a cause's lines raise an alert (first and last seen, how often in the last minute)
that clears once they stop for `alerts.error_lines_clear_s` (120 s). *start-up* causes count only
before a process serves; *serving* ones only once it does.

This file is made by `scripts/failures_doc.py`.
"""


def render() -> str:
    out = [HEAD]
    excerpts = real_failures()
    for cause in CAUSES:
        when = "" if cause.when == "any" else f", {cause.when} only"
        live = "" if cause.live else ", names why a process ended (no alert while serving)"
        out.append(f"\n## `{cause.kind}` — {cause.summary}\n\n*{cause.severity}{when}{live}*\n\n")
        out.append(f"**What to do:** {cause.hint.replace('{', '⟨').replace('}', '⟩')}\n")
        lines = [e for e in excerpts if e["kind"] == cause.kind]
        if not lines:
            out.append("\nNo real line yet: a catch-all for what the rows above do not name.\n")
        for excerpt in lines:
            facts = [str(excerpt["source"]), str(excerpt.get("version") or ""), str(excerpt["phase"])]
            if excerpt.get("held_out"):
                facts.append("held out")
            out.append(f"\n- {' · '.join(f for f in facts if f)}\n\n  ```text\n  {excerpt['line']}\n  ```\n")
    return "".join(out)


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC.relative_to(ROOT)}")
