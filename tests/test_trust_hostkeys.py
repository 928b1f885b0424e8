"""Host keys not verified — by the profile or through ssh_config — is said on every verb (not
only by `validate`) and on the board, for as long as it is so. Against the test sshd."""

from __future__ import annotations

from pathlib import Path

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.session import Session
from cpconsole.ui.screens.board import rollup

from .conftest import write_profile
from .simcluster import demo_text, over_ssh
from .sshd import Sshd
from .test_cli import cpconsole


def ssh_profile(tmp_path: Path, sshd: Sshd, nodes_dir: str, config: str) -> Path:
    config_file = tmp_path / "ssh_config"
    config_file.write_text(config)
    text = over_ssh(demo_text(tmp_path, block=sshd.block), sshd, tmp_path, nodes_dir).replace(
        f"config_file: {sshd.empty_config}", f"config_file: {config_file}"
    )
    return write_profile(tmp_path, text)


def test_known_hosts_turned_off_in_ssh_config_is_said_on_every_verb(tmp_path: Path, sshd: Sshd, nodes_dir: str) -> None:
    profile = ssh_profile(tmp_path, sshd, nodes_dir, f"Host {sshd.ips[1]}\n  UserKnownHostsFile none\n")
    for verb in ("status", "plan", "logs"):
        done = cpconsole(verb, profile)
        lines = [line for line in done.stderr.splitlines() if "NOT verified" in line]
        expected = "prefill-b: SSH host key NOT verified (ssh_config sets UserKnownHostsFile none)"
        assert lines == [f"cpconsole: WARNING: {expected}"], (verb, done.stderr)


def test_verification_off_in_the_profile_is_on_the_board(tmp_path: Path, sshd: Sshd, nodes_dir: str) -> None:
    profile = ssh_profile(tmp_path, sshd, nodes_dir, "")
    text = profile.read_text().replace("ssh: {user: root,", "ssh: {verify_host_keys: false, user: root,", 1)
    plan = build_plan(load_profile_text(text))
    session = Session(plan)
    assert len(session.unverified_host_keys) == 3
    shown = rollup(session, session.view()).plain
    assert shown.startswith("⚠ SSH host keys NOT verified: prefill-a, prefill-b, decode-a")
    verified = Session(build_plan(load_profile_text(profile.read_text())))
    assert verified.unverified_host_keys == [] and "NOT verified" not in rollup(verified, verified.view()).plain
