"""Servers started with an API key: the key, read on the jump host, reaches the servers (vLLM's
VLLM_API_KEY, the proxy's OPENAI_API_KEY) and rides on every request cpconsole sends — and is never
written into a launch script, a log, a command line or `render`; a wrong one is named as such."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_text

from .simcluster import demo_text

KEY = "sk-cp-3f9a1c0e7d"
KEY_ENV = "CPCONSOLE_TEST_API_KEY"


def run(profile: Path, *args: str, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if key is not None:
        env[KEY_ENV] = key
    return subprocess.run(
        [sys.executable, "-m", "cpconsole", *args[:1], str(profile), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def contents(path: Path) -> bytes:
    """A file's bytes, or none when it went away meanwhile (a manifest's .tmp renamed, a rotated log)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def keyed_demo(tmp_path: Path) -> Path:
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path) + f"api_key:\n  env: {KEY_ENV}\n")
    return profile


def test_every_path_carries_the_key_and_no_file_or_command_line_holds_it(tmp_path: Path) -> None:
    profile = keyed_demo(tmp_path)
    plan = build_plan(load_profile_text(profile.read_text()))
    decode = plan.process("decode-0").base_url
    try:
        up = run(profile, "up")
        assert up.returncode == 0, up.stdout + up.stderr  # the probe passed through the proxy: keyed both hops
        smoke = run(profile, "smoke", "--needle", "0")
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        status = run(profile, "status")  # metrics and probes are keyed too: no 401 among its alerts
        assert "401" not in status.stdout and "API key" not in status.stdout, status.stdout
        assert httpx.post(decode + "/v1/completions", json={"prompt": "x", "max_tokens": 1}).status_code == 401
        proxy = plan.process("proxy").base_url  # it holds the key: it must not lend it to anyone
        assert httpx.post(proxy + "/v1/completions", json={"prompt": "x", "max_tokens": 1}).status_code == 401
        assert httpx.get(decode + "/health").status_code == 200  # vLLM leaves /health open
        written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
        assert any(p.name == "launch.sh" for p in written) and not any(p.name == ".api_key" for p in written)
        assert not [p for p in written if KEY.encode() in contents(p)]  # scripts, logs, manifests
        assert KEY not in run(profile, "render").stdout
        assert f"export VLLM_API_KEY={KEY}" in run(profile, "render", "--show-secrets").stdout  # when asked
        for proc_dir in Path("/proc").iterdir():
            cmdline = proc_dir / "cmdline"
            if proc_dir.name.isdigit():
                try:
                    assert KEY.encode() not in cmdline.read_bytes()
                except OSError:
                    continue
        wrong = run(profile, "smoke", "--needle", "0", key="sk-not-the-one")
        assert wrong.returncode == 1 and "wrong or missing API key" in wrong.stdout
    finally:
        run(profile, "down")


def test_a_key_that_cannot_be_read_is_said_before_anything_starts(tmp_path: Path) -> None:
    profile = keyed_demo(tmp_path)
    done = run(profile, "up", key=None)
    assert done.returncode == 2 and f"api_key: ${KEY_ENV} is empty or not set on this host" in done.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("launch.sh"))
    key_file = tmp_path / "missing-key"
    profile.write_text(profile.read_text().replace(f"env: {KEY_ENV}", f"file: {key_file}"))
    done = run(profile, "status")
    assert done.returncode == 2 and f"api_key: cannot read {key_file}" in done.stderr
    key_file.write_text("sk-read-by-anyone\n")
    key_file.chmod(0o644)  # like ssh with a private key: a key others can read is refused
    done = run(profile, "status")
    assert done.returncode == 2 and "can be read or written by others (mode 644); `chmod 600" in done.stderr
    key_file.chmod(0o600)
    assert "api_key" not in run(profile, "status").stderr
    profile.write_text(profile.read_text() + f"  env: {KEY_ENV}\n")
    done = run(profile, "validate")
    assert done.returncode == 2 and "give the key's env or its file, one of them" in done.stderr
