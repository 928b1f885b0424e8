"""Every misuse of every verb exits 2 with one line that says what is wrong (and the nearest real
name), before anything is started or asked of a node — never an internal error."""

from __future__ import annotations

import pytest

from .conftest import PROFILES
from .test_cli import cpconsole

DEMO = PROFILES / "demo.yaml"

MISUSES = [
    (("render", DEMO, "-p", "decode-9"), "no process named 'decode-9' (did you mean 'decode-0'?)"),
    (("render", DEMO, "--format", "xml"), "invalid choice: 'xml'"),
    (("up", DEMO, "-p", "prefil-0"), "no process named 'prefil-0' (did you mean 'prefill-0'?)"),
    (
        ("down", DEMO, "-p", "nothing"),
        "no process named 'nothing' (processes are: prefill-0, prefill-1, decode-0, proxy)",
    ),
    (("restart", DEMO, "decod"), "no instance or process named 'decod' (did you mean 'decode'?)"),
    (
        ("restart", DEMO, "decode"),
        "decode is the only decode instance: requests fail while it restarts; add --allow-downtime",
    ),
    (("restart", DEMO, "proxy"), "the proxy is the one way in: every request fails while it restarts"),
    (("logs", DEMO, "-p", "proxi"), "no process named 'proxi' (did you mean 'proxy'?)"),
    (("logs", DEMO, "--since-offset", "0"), "name its process with -p"),
    (("exec", DEMO, "decode-b", "--", "true"), "no node named 'decode-b' (did you mean 'decode-a'?)"),
    (("exec", DEMO, "--all", "--"), "exec needs a command after --"),
    (("exec", DEMO), "exec NODE|--all -- CMD"),
    (("bench", DEMO, "--node", "bogus"), "no node named 'bogus' (nodes are: prefill-a, prefill-b, decode-a)"),
    (("bench", DEMO, "--target", "prefill-1"), "prefill-1 serves no HTTP"),
    (("smoke", DEMO, "--target", "prefill-1"), "prefill-1 serves no HTTP"),
    (("smoke", DEMO, "--depths", "2"), "--depths wants fractions between 0 and 1"),
    (("smoke", DEMO, "--needle", "3000000000"), "--needle 3000000000 + 64 tokens out exceed max_model_len 136000"),
    (("smoke", DEMO, "--needle", "-5"), "must be 0 or more, got -5"),
    (("status", DEMO, "--format", "json"), "unrecognized arguments: --format json"),
    (("preflight",), "the following arguments are required: PROFILE"),
]


@pytest.mark.parametrize(("args", "message"), MISUSES, ids=[" ".join(map(str, a[:1] + a[2:])) for a, _ in MISUSES])
def test_misuse_exits_2_with_a_message(args: tuple[object, ...], message: str) -> None:
    done = cpconsole(*args)  # type: ignore[arg-type]
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "internal error" not in done.stderr and "Traceback" not in done.stderr
