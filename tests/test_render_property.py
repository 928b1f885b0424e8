"""Property: whatever strings an operator puts in paths, env values and arguments, the rendered
script hands exactly those strings to the program — through the plan and `sh`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_data
from cpconsole.core.profile.rules import DERIVED_FLAGS
from cpconsole.core.profile.vllm_arguments import for_version
from cpconsole.core.render import render_script

from .conftest import RECORDER, run_argv, run_sh, shell_baseline

# Anything a POSIX argv or environment can carry: every character but NUL (and lone surrogates,
# which are not text).
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)
ENV_NAMES = st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,12}\Z").filter(
    lambda n: n not in {"PATH", "PWD", "OLDPWD", "LC_CTYPE", "SHLVL", "_"}
)

BIN = Path(tempfile.mkdtemp(prefix="cpconsole-recorder-"))
for program in ("recorder", "docker"):
    (BIN / program).write_text(RECORDER)
    (BIN / program).chmod(0o755)
BASELINE = shell_baseline(BIN)
# vLLM arguments that take any text (validate refuses names vLLM does not have), but those the plan derives
_NEWEST = for_version(None)
assert _NEWEST is not None
TEXT_ARGS = sorted(
    flag.replace("-", "_")
    for flag, arg in _NEWEST.by_flag.items()
    if arg.kind == "str" and not arg.choices and not arg.many and flag not in DERIVED_FLAGS
)


def profile_data(
    model: str, env: dict[str, str], args: dict[str, str], extra: str, container: bool, setup: bool = False
) -> dict[str, object]:
    """Built directly, not through YAML: PyYAML folds some characters (e.g. U+0085) on the way.
    `setup`: a setup line, so that the env is exported by bash after it (else none at all)."""
    defaults: dict[str, object] = {"env": env, "vllm_command": ["recorder", extra], "setup": ["true"] if setup else []}
    if container:
        defaults["container"] = "ctr"
    return {
        "name": "prop",
        "model": {"path": model},
        "defaults": defaults,
        "nodes": {"n1": {"host": "127.0.0.1", "chips": 1}},
        "instances": {"s": {"role": "colocated", "nodes": ["n1"], "port": 8000, "vllm_args": args}},
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=ANY_TEXT,
    env=st.dictionaries(ENV_NAMES, ANY_TEXT, max_size=4),
    args=st.dictionaries(st.sampled_from(TEXT_ARGS), ANY_TEXT, max_size=4),
    extra=ANY_TEXT,
    container=st.booleans(),
    setup=st.booleans(),
)
def test_strings_arrive_byte_exact(
    model: str, env: dict[str, str], args: dict[str, str], extra: str, container: bool, setup: bool
) -> None:
    plan = build_plan(load_profile_data(profile_data(model, env, args, extra, container, setup)))
    proc = plan.process("s-0")
    assert proc.argv[:4] == ("recorder", extra, "serve", model)
    got = run_sh(render_script(proc), path_first=BIN)
    if container:  # the docker here records what it was asked: then what it would run in there runs
        pidfile = f"/tmp/cpconsole-{plan.run_key}-s-0.pid"
        given = [] if setup else [w for key, value in proc.env for w in ("--env", f"{key}={value}")]
        shell = "bash" if setup else "sh"
        assert got["argv"][: len(given) + 6] == ["exec", *given, "ctr", "setsid", "-w", shell, "-c"]
        script, *rest = got["argv"][len(given) + 6 :]
        assert rest == [pidfile, *proc.argv]
        try:
            # as docker exec gives it: the --env pairs (no setup), else what the script exports
            got = run_argv([shell, "-c", script, *rest], path_first=BIN, env={} if setup else proc.env_dict)
        finally:
            Path(pidfile).unlink(missing_ok=True)
    assert got["argv"] == list(proc.argv[1:])
    own = BASELINE | {"SHLVL", "_"}  # what sh and bash set for themselves
    assert {k: v for k, v in got["env"].items() if k not in own} == env
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        assert proc.argv[proc.argv.index(flag) + 1] == value
