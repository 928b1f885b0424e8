"""Every verb once, on the demo, as an operator's terminal meets them: no Python warning (asyncssh's
DSA import under cryptography 51 printed ten lines on every verb that touched a node; cpconsole's
own warnings are errors here) and no escape or control byte from a profile, a node or a server
(a served name, a manifest's `started_by`, log lines, command output with OSC titles, screen
clears and C1 sequences): the CLI's output passes one sanitiser."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

from cpconsole.cli import VERBS

from .simcluster import demo_text

STRICT = """
import sys, warnings
warnings.simplefilter("default")
warnings.filterwarnings("error", module=r"cpconsole(\\.|$)")
from cpconsole.cli import main
sys.exit(main(sys.argv[1:]))
"""
HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\x1bP+q\x1b\\"
ACTING = re.compile("[\x1b\x07\x80-\x9f]")  # ESC, BEL and the C1 controls (8-bit CSI, OSC, …)


def run_verb(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "dev", "-c", STRICT, *args], capture_output=True, text=True, timeout=timeout
    )


def quiet(words: list[str], out: str, err: str) -> None:
    assert "Traceback" not in err, (words, err)
    assert "Warning" not in err, (words, err)
    assert not ACTING.search(out + err), (words, ACTING.findall(out + err))


def test_every_verb_once_prints_no_warning_and_no_control_byte(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    demo = str(profile)
    hostile = tmp_path / "hostile.yaml"  # only parsed and rendered: the served name is the profile's text
    hostile.write_text(profile.read_text().replace("served_name: deepseek_v3", f"served_name: {json.dumps(HOSTILE)}"))
    once = [
        ["validate", demo],
        ["plan", str(hostile)],
        ["render", str(hostile)],
        ["schema"],
        ["ls", "--offline"],
        ["up", demo],
        ["status", demo],
        ["ranks", demo],
        ["journal", demo],
        ["logs", demo, "-n", "5"],
        ["exec", demo, "--all", "--", "printf", f"{HOSTILE}\\n"],
        ["preflight", demo],
        ["containers", demo, "check"],
        ["smoke", demo],
        ["accuracy", demo, "--limit", "2", "--max-tokens", "32"],
        ["bench", demo, "--list"],
        ["sweep", demo, "--list"],
        ["alert-test", demo],
        ["bundle", demo, "-o", str(tmp_path / "bundle.tar.gz")],
        ["restart", demo, "decode-0", "--allow-downtime"],
        ["apply", demo, "--dry-run"],
        ["down", demo],
    ]
    assert {words[0] for words in once} | {"watch"} == set(VERBS), "a verb is missing here"
    try:
        for words in once:
            done = run_verb(*words)
            quiet(words, done.stdout, done.stderr)
            if words[0] == "up":  # what the nodes say from now on is hostile too
                plant_hostile_node_text(tmp_path)
        watcher = subprocess.Popen(
            [sys.executable, "-X", "dev", "-c", STRICT, "watch", demo],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watcher.stdout is not None
        header = watcher.stdout.readline()  # it is watching
        watcher.send_signal(signal.SIGINT)
        out, errors = watcher.communicate(timeout=60)
        quiet(["watch"], header + out, errors)
    finally:
        run_verb("down", demo)


def plant_hostile_node_text(tmp: Path) -> None:
    """decode-0's log and manifest (`started_by`), as a node could have them."""
    decode = next(Path(tmp, "run").glob("*/decode-0"))
    manifest = json.loads((decode / "manifest.json").read_text())
    manifest["started_by"] = f"ops{HOSTILE}@jump"
    (decode / "manifest.json").write_text(json.dumps(manifest))
    with (decode / "log").open("a") as log:
        log.write(f"ERROR {HOSTILE} engine core failed\n")
