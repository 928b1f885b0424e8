"""YAML and schema errors: every one reads `file:line:col: path: message`, none is a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpconsole.core.profile import ProfileError, load_profile, load_profile_text

from .conftest import PROFILES, line_of, write_profile
from .sshd import free_port, profile_ports

MINIMAL = """\
name: tiny
model: {path: /models/tiny}
nodes:
  n1: {host: 127.0.0.11, chips: 1}
instances:
  serve:
    role: colocated
    nodes: [n1]
    port: 8000
"""


def errors(tmp_path: Path, text: str) -> list[str]:
    path = write_profile(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    lines = [str(f) for f in caught.value.findings]
    assert all(line.startswith(f"{path}:") for line in lines)
    return [line.removeprefix(f"{path}:") for line in lines]


def test_minimal_profile_loads_with_defaults() -> None:
    loaded = load_profile_text(MINIMAL)
    assert loaded.profile.defaults.vllm_command == ("vllm",)
    assert loaded.profile.instances["serve"].bind == "0.0.0.0"
    assert loaded.findings == ()
    assert len(loaded.digest) == 64


def test_digest_follows_meaning_not_formatting() -> None:
    reformatted = MINIMAL.replace("model: {path: /models/tiny}", "model:\n  path: /models/tiny  # moved")
    assert load_profile_text(MINIMAL).digest == load_profile_text(reformatted).digest
    assert load_profile_text(MINIMAL).digest != load_profile_text(MINIMAL.replace("8000", "8001")).digest


@pytest.mark.parametrize(("opened", "closer"), [("[8000", "]"), ("{at: 8000", "}"), ('"8000', '"')])
def test_an_unclosed_bracket_or_quote_is_shown_where_it_opened(tmp_path: Path, opened: str, closer: str) -> None:
    """The parser reads on until something cannot belong inside, often lines later: both places."""
    text = MINIMAL.replace("    port: 8000", f"    port: {opened}")
    where, gave_up = errors(tmp_path, text)
    line = line_of(text, f"port: {opened}")
    assert where.startswith(f"{line}:11: this {opened[0]} is never closed") and where.endswith(
        f"add the missing {closer}"
    )
    assert ": YAML syntax:" in gave_up and int(gave_up.split(":")[0]) > line


def test_tab_indentation_is_a_syntax_error(tmp_path: Path) -> None:
    text = MINIMAL.replace("    port: 8000", "\tport: 8000")
    (message,) = errors(tmp_path, text)
    assert message.startswith(f"{line_of(text, 'port: 8000')}:1: YAML syntax:")
    assert message.endswith("(indent with spaces, not tabs)")


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    text = MINIMAL.replace("chips: 1}", "chipz: 1}")
    messages = errors(tmp_path, text)
    assert f"{line_of(text, 'chipz')}:26: nodes.n1.chipz: unknown key 'chipz' (did you mean 'chips'?)" in messages
    assert f"{line_of(text, 'chipz')}:3: nodes.n1: missing required key 'chips'" in messages


def test_unknown_top_level_key(tmp_path: Path) -> None:
    text = MINIMAL + "proxi:\n  node: n1\n"
    assert errors(tmp_path, text) == [f"{line_of(text, 'proxi')}:1: proxi: unknown key 'proxi' (did you mean 'proxy'?)"]


def test_unknown_key_without_a_close_match_lists_the_allowed_ones(tmp_path: Path) -> None:
    text = MINIMAL.replace("model: {path: /models/tiny}", "model: {path: /models/tiny, colour: red}")
    (message,) = errors(tmp_path, text)
    assert message == "2:29: model.colour: unknown key 'colour' (allowed keys: check_path, path, served_name)"


def test_unknown_key_deep_inside_a_union_field(tmp_path: Path) -> None:
    text = MINIMAL.replace("    port: 8000", "    port: 8000\n    data_parallel: {size: 1, rcp_port: 5980}")
    (message,) = errors(tmp_path, text)
    assert "instances.serve.data_parallel.rcp_port: unknown key 'rcp_port' (did you mean 'rpc_port'?)" in message


def test_missing_top_level_key(tmp_path: Path) -> None:
    text = MINIMAL.replace("model: {path: /models/tiny}\n", "")
    assert errors(tmp_path, text) == ["1:1: missing required key 'model'"]


def test_wrong_type_shows_the_value(tmp_path: Path) -> None:
    text = MINIMAL.replace("chips: 1}", "chips: sixteen}")
    (message,) = errors(tmp_path, text)
    assert message.startswith(f"{line_of(text, 'sixteen')}:26: nodes.n1.chips: Input should be a valid integer")
    assert message.endswith("(got 'sixteen')")


def test_wrong_literal(tmp_path: Path) -> None:
    text = MINIMAL.replace("role: colocated", "role: prefil")
    (message,) = errors(tmp_path, text)
    assert message.startswith(f"{line_of(text, 'role:')}:5: instances.serve.role: Input should be 'prefill', 'decode'")


def test_env_boolean_must_be_quoted(tmp_path: Path) -> None:
    text = MINIMAL + "defaults:\n  env: {OMP_PROC_BIND: false, HCCL_BUFFSIZE: 768}\n"
    (message,) = errors(tmp_path, text)
    assert message == (
        f"{line_of(text, 'OMP_PROC_BIND')}:9: defaults.env.OMP_PROC_BIND: YAML read this as the boolean False; "
        'quote it to pass text, e.g. "False"'
    )
    loaded = load_profile_text(text.replace("false", '"false"'))
    assert loaded.profile.defaults.env == {"OMP_PROC_BIND": "false", "HCCL_BUFFSIZE": "768"}


def test_float_version_must_be_quoted(tmp_path: Path) -> None:
    text = MINIMAL + "versions: {vllm_ascend: 0.10}\n"
    (message,) = errors(tmp_path, text)
    assert "versions.vllm_ascend: YAML read this as the number 0.1; quote it" in message


def test_env_name_must_be_a_shell_name(tmp_path: Path) -> None:
    text = MINIMAL + "defaults:\n  env: {BAD-NAME: x}\n"
    (message,) = errors(tmp_path, text)
    assert message == (
        f"{line_of(text, 'BAD-NAME')}:9: defaults.env.BAD-NAME: invalid name 'BAD-NAME': "
        "use letters, digits and _, not starting with a digit"
    )


def test_host_cannot_carry_shell_syntax(tmp_path: Path) -> None:
    text = MINIMAL.replace("host: 127.0.0.11", "host: 'a;reboot'")
    (message,) = errors(tmp_path, text)
    assert message == (
        f"{line_of(text, 'reboot')}:8: nodes.n1.host: invalid value 'a;reboot': "
        "an address or ssh_config alias: letters, digits and . _ : % [ ] @ - only"
    )


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    text = MINIMAL.replace("    port: 8000", "    port: 8000\n    port: 8001")
    (message,) = errors(tmp_path, text)
    assert message == (
        f"{line_of(text, 'port: 8001')}:5: instances.serve.port: duplicate key (first at line "
        f"{line_of(text, 'port: 8000')}); YAML would silently keep the last one"
    )


@pytest.mark.parametrize(
    ("text", "expected"), [("", "the profile is empty"), ("- a\n- b\n", "a profile is a YAML mapping")]
)
def test_empty_or_non_mapping(tmp_path: Path, text: str, expected: str) -> None:
    (message,) = errors(tmp_path, text)
    assert message.startswith(f"1:1: {expected}")


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ProfileError) as caught:
        load_profile(missing)
    assert str(caught.value) == f"{missing}:1:1: cannot read the profile: No such file or directory"


def test_container_accepts_a_bare_name() -> None:
    loaded = load_profile_text(MINIMAL + "defaults: {container: vllm-ascend}\n")
    assert loaded.profile.defaults.container is not None
    assert loaded.profile.defaults.container.name == "vllm-ascend"


def test_yaml_anchors_work_and_keep_their_lines(tmp_path: Path) -> None:
    loaded = load_profile(PROFILES / "deepseek-2p1d-dp.yaml")
    a, b = loaded.profile.instances["prefill-1"], loaded.profile.instances["prefill-2"]
    assert a.vllm_args == b.vllm_args and a.kv_connector == b.kv_connector


def test_every_shipped_profile_validates() -> None:
    shipped = sorted(PROFILES.glob("*.yaml"))
    assert len(shipped) >= 2
    for path in shipped:
        assert load_profile(path).profile.name


def test_the_tests_own_servers_keep_clear_of_every_shipped_profiles_ports() -> None:
    """sshd and helper servers bind the simulated nodes' addresses too: never on a profile's port."""
    taken = profile_ports()
    assert {8004, 8005, 36000, 36215, 60000, 60015} <= taken  # http, proxy, kv, HCCL's host ports
    assert all(free_port() not in taken for _ in range(50))
