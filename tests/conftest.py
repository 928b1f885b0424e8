"""Shared fixtures. Everything here talks only to this machine."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A stand-in for any program: prints its arguments and environment as JSON, runs nothing.
RECORDER = f"""#!{sys.executable}
import json, os, sys
json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}}, sys.stdout)
"""


class Recorded(TypedDict):
    """What the recorder printed: the arguments it got and its whole environment."""

    argv: list[str]
    env: dict[str, str]
    cwd: str


os.environ.pop("NO_COLOR", None)  # NO_COLOR changes Textual's output and breaks snapshot comparisons
# what the verbs keep on the jump host (bench, sweep, accuracy runs, prompt history) goes to a folder
# of this run's, never the user's own (a test that reads it back sets its own)
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="cpconsole-test-state-")


@pytest.fixture
def recorder_bin(tmp_path: Path) -> Callable[..., Path]:
    """A directory with recorder programs under the given names, to put first on PATH."""

    def make(*names: str) -> Path:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for name in names:
            path = bin_dir / name
            path.write_text(RECORDER)
            path.chmod(0o755)
        return bin_dir

    return make


def run_sh(
    script: str, *, path_first: Path | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Recorded:
    """Run shell text with a minimal environment (and `env`); return what the recorder it calls printed."""
    return run_argv(["sh", "-c", script], path_first=path_first, cwd=cwd, env=env)


def run_argv(
    argv: list[str], *, path_first: Path | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Recorded:
    """Run a program with a minimal environment (and `env`); return what the recorder it calls printed."""
    env = {"PATH": f"{path_first}:/usr/bin:/bin" if path_first else "/usr/bin:/bin", **(env or {})}
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    result: Recorded = json.loads(done.stdout)
    return result


def run_interactive_bash(script: str, *, env: dict[str, str], cwd: Path) -> Recorded:
    """Shell text typed into an interactive bash (`docker exec -it … bash`): it reads ~/.bashrc
    with a prompt set. Its job-control complaints without a terminal go to stderr, unread."""
    done = subprocess.run(
        ["bash", "-i"], input=script, env=env, cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    result: Recorded = json.loads(done.stdout)
    return result


def shell_baseline(path_first: Path) -> set[str]:
    """Environment names `sh` itself sets (and `cd` adds), to subtract from a recording."""
    recorded = run_sh("exec recorder", path_first=path_first)
    return {*recorded["env"], "PWD", "OLDPWD"}


def write_profile(tmp_path: Path, text: str, name: str = "profile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str, start: int = 0) -> int:
    """1-based line number of the first line containing needle (after line `start`)."""
    for number, line in enumerate(text.splitlines(), 1):
        if number > start and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


# ---------------------------------------------------------------- real sshd and transports

from collections.abc import AsyncIterator, Iterator  # noqa: E402

from cpconsole.core.remote import LocalTransport, ShellTransport, SSHTransport  # noqa: E402

from .loopback import Block  # noqa: E402
from .sshd import SSHD, Sshd, free_port, make_sshd, node_root  # noqa: E402


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    if not Path(SSHD).exists():
        raise RuntimeError("the SSH tests need OpenSSH's sshd: apt-get install -y openssh-server")
    server = make_sshd(Block.fresh().nodes)
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def nodes_dir() -> Iterator[str]:
    directory = node_root()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["local", "ssh"])
async def transport(request: pytest.FixtureRequest, nodes_dir: str) -> AsyncIterator[ShellTransport]:
    """The same node behaviour through both transports."""
    if request.param == "local":
        node: ShellTransport = LocalTransport("local-node")
    else:
        server: Sshd = request.getfixturevalue("sshd")
        node = SSHTransport(server.node(server.ips[0], run_dir=nodes_dir))
    yield node
    await node.close()


@pytest.fixture
def silent_listener() -> Iterator[tuple[str, int]]:
    """A node that accepts TCP connections and never says a word."""
    ip = Block.fresh().ip(14)
    server = socket.socket()
    server.bind((ip, free_port(ip)))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield ip, server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()
