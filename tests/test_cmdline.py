"""The console's `:` command line: text to typed intents, with errors that say what would do."""

from __future__ import annotations

import pytest

from cpconsole.core import cmdline as cmd
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile

from .conftest import PROFILES

PLAN = build_plan(load_profile(PROFILES / "demo.yaml"))


@pytest.mark.parametrize(
    ("text", "command"),
    [
        (":up", cmd.Up()),
        ("down", cmd.Down()),
        (":restart decode", cmd.Restart("decode")),
        (":restart prefill-1", cmd.Restart("prefill-1")),
        (":logs", cmd.ShowLogs(None)),
        (":logs prefill-0", cmd.ShowLogs("prefill-0")),
        (":details proxy", cmd.ShowDetails("proxy")),
        (":exec all npu-smi info", cmd.Exec(("prefill-a", "prefill-b", "decode-a"), ("npu-smi", "info"))),
        (
            ":exec decode-a,prefill-a sh -c 'echo $HOME'",
            cmd.Exec(("decode-a", "prefill-a"), ("sh", "-c", "echo $HOME")),
        ),
        (":npus", cmd.ShowScreen("npus")),
        (":help", cmd.Help()),
        (":q", cmd.Quit()),
    ],
)
def test_commands_parse_to_intents(text: str, command: cmd.Command) -> None:
    assert cmd.parse_command(text, PLAN) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (":restat decode", "unknown command 'restat' — did you mean 'restart'?"),
        (":restart decod", "nothing called 'decod' — did you mean 'decode'?"),
        (":logs prefill-9", "no process 'prefill-9' — did you mean"),
        (":exec nowhere ls", "no node 'nowhere'"),
        (":exec all", "usage: :exec NODE|all ARGV..."),
        (":up now", ":up takes no arguments"),
        (":", "empty command"),
        (":logs 'unclosed", "cannot split"),
    ],
)
def test_bad_commands_say_what_would_do(text: str, message: str) -> None:
    with pytest.raises(cmd.CommandError) as caught:
        cmd.parse_command(text, PLAN)
    assert message in str(caught.value)


def test_completions_come_from_the_plan() -> None:
    assert cmd.completions(":logs d", PLAN) == ["logs decode-0"]
    assert cmd.completions("restart ", PLAN) == ["restart decode", "restart prefill"]
    assert "exec all" in cmd.completions("ex", PLAN) and cmd.completions("zzz", PLAN) == []
