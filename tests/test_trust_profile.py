"""A profile that is hostile or broken gets a clear error at its place and exit 2: never a hang,
a memory blow-up or a traceback — alias bombs, huge or self-referring values, files that are not
files, sizes no cluster has, ports past 65535, values no number or string should hold."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .conftest import PROFILES, write_profile
from .test_cli import cpconsole

DEMO = (PROFILES / "demo.yaml").read_text()
LAUGHS = (
    "a: &a ["
    + ",".join(['"lol"'] * 9)
    + "]\n"
    + "".join(f"{b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True))
)


def refused(path: Path | str, where: str, message: str) -> None:
    """validate and render both exit 2, at `file:line:col` (`where` is line:col or a regex), saying `message`."""
    for verb in ("validate", "render"):
        done = cpconsole(verb, path)
        assert done.returncode == 2, (verb, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr
        assert re.search(rf"^{re.escape(str(path))}:{where}: .*{message}", done.stderr, re.M), done.stderr


def variant(tmp_path: Path, old: str, new: str) -> Path:
    assert old in DEMO
    return write_profile(tmp_path, DEMO.replace(old, new, 1))


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    assert len(LAUGHS) < 600
    refused(write_profile(tmp_path, LAUGHS), r"\d+:\d+", "aliases expand this value to more than 100,000 values")


def test_a_self_referring_alias_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    refused(
        write_profile(tmp_path, "name: &loop [*loop]\n", "loop.yaml"), "1:7", "refers to the value that contains it"
    )
    deep = write_profile(tmp_path, "name: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
    refused(deep, "1:1", "nested too deeply")


def test_numbers_no_cluster_has_are_refused_without_counting_to_them(tmp_path: Path) -> None:
    huge = variant(tmp_path, "tensor_parallel_size: 16", "tensor_parallel_size: 10000000019")
    refused(huge, r"\d+:7", "tensor_parallel_size 10000000019 is over 4096 ranks")
    digits = variant(tmp_path, "tensor_parallel_size: 16", "tensor_parallel_size: " + "9" * 5000)
    refused(digits, r"\d+:\d+", "Exceeds the limit")
    refused(variant(tmp_path, "kv_port: 36200", "kv_port: 65530"), r"\d+:5", "past the last port 65535")


def test_non_finite_numbers_nul_characters_and_non_addresses_are_refused(tmp_path: Path) -> None:
    raw = write_profile(tmp_path, "name: demo\nmodel: {path: /m\x00}\n", "raw.yaml")
    refused(raw, "2:17", "character U\\+0000 is not allowed in YAML")
    refused(variant(tmp_path, "max_model_len: 136000", "max_model_len: .inf"), r"\d+:7", "not a finite number")
    nul = variant(tmp_path, "    HCCL_BUFFSIZE", '    EXTRA: "a\\0b"\n    HCCL_BUFFSIZE')
    refused(nul, r"\d+:5", "defaults.env.EXTRA: contains a NUL character")
    refused(variant(tmp_path, "bind: node", "bind: 'not an address'"), r"\d+:5", "is not an IP address")


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "huge"])
def test_what_is_not_a_profile_file_is_refused_without_reading_it_all(tmp_path: Path, kind: str) -> None:
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)  # a writer never comes: reading would block forever
    elif kind == "device":
        path = Path("/dev/zero")  # never ends
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    refused(path, "1:1", "cannot read the profile: " + ("larger than" if kind == "huge" else "not a regular file"))
