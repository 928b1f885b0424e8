"""No Python warning reaches the operator's terminal: every verb once, on the demo, with warnings
raised from cpconsole's own modules turned into errors and nothing of any warning on stderr
(asyncssh's DSA import under cryptography 51 printed ten lines on every verb that touched a node)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from cpconsole.cli import VERBS

from .simcluster import demo_text

# a cpconsole warning is an error; the known, harmless asyncssh one is filtered where it is imported
STRICT = """
import sys, warnings
warnings.simplefilter("default")
warnings.filterwarnings("error", module=r"cpconsole(\\.|$)")
from cpconsole.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_verb(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "dev", "-c", STRICT, *args], capture_output=True, text=True, timeout=timeout
    )


def test_every_verb_once_prints_no_warning(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    demo = str(profile)
    once = [
        ["validate", demo],
        ["plan", demo],
        ["render", demo],
        ["schema"],
        ["ls", "--offline"],
        ["up", demo],
        ["status", demo],
        ["ranks", demo],
        ["journal", demo],
        ["logs", demo, "-n", "5"],
        ["exec", demo, "--all", "--", "true"],
        ["preflight", demo],
        ["containers", demo, "check"],
        ["smoke", demo],
        ["bench", demo, "--list"],
        ["sweep", demo, "--list"],
        ["alert-test", demo],
        ["restart", demo, "decode-0"],
        ["down", demo],
    ]
    assert {words[0] for words in once} | {"watch"} == set(VERBS), "a verb is missing here"
    try:
        for words in once:
            done = run_verb(*words)
            assert "Traceback" not in done.stderr, (words, done.stderr)
            assert "Warning" not in done.stderr, (words, done.stderr)
        watcher = subprocess.Popen(
            [sys.executable, "-X", "dev", "-c", STRICT, "watch", demo],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watcher.stdout is not None
        watcher.stdout.readline()  # its header: it is watching
        watcher.send_signal(signal.SIGINT)
        _, errors = watcher.communicate(timeout=60)
        assert "Warning" not in errors and "Traceback" not in errors, errors
    finally:
        run_verb("down", demo)
