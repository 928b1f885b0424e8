"""A real OpenSSH server on loopback for the tests: one sshd, the three "nodes" of a loopback block,
its own host key, client key, known_hosts and an empty ssh_config (never ~/.ssh)."""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from cpconsole.core.plan import NodePlan
from cpconsole.core.profile.schema import SshSettings

from .loopback import Block

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"  # sshd re-execs itself: must be an absolute path


@functools.cache
def profile_ports() -> frozenset[int]:
    """Every port a shipped profile's processes take: a port the tests take for sshd or a helper
    server binds the simulated nodes' addresses too, and must not be one of them."""
    from cpconsole.core.plan import build_plan
    from cpconsole.core.profile import load_profile

    return frozenset(
        port
        for path in (Path(__file__).resolve().parent.parent / "profiles").glob("*.yaml")
        for proc in build_plan(load_profile(path)).processes
        for use in proc.ports
        for port in range(use.start, use.end + 1)
    )


def free_port(ip: str = "127.0.0.1") -> int:
    """A free port of `ip` (the kernel's pick), none of profile_ports()."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind((ip, 0))
            port = int(s.getsockname()[1])
        if port not in profile_ports():
            return port
    raise RuntimeError(f"no free port on {ip} outside the profiles' own")


def login_user() -> str:
    """A /bin/sh user is faster than root and gets SSH signals; CI creates `cptest`."""
    wanted = os.environ.get("CPCONSOLE_TEST_SSH_USER")
    if wanted:
        return wanted
    try:
        pwd.getpwnam("cptest")
        return "cptest"
    except KeyError:
        return getpass.getuser()


def sshd_config(listen: list[str], keys: Path, pid_file: Path) -> str:
    """An sshd_config for the tests: these addresses, the host key and authorized keys in `keys`,
    keys only, forwarding on (cpconsole forwards HTTP through a node's connection)."""
    return "".join(f"ListenAddress {address}\n" for address in listen) + (
        f"HostKey {keys}/host_key\nPidFile {pid_file}\nAuthorizedKeysFile {keys}/authorized_keys\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nMaxSessions 100\n"
        "AllowTcpForwarding yes\nX11Forwarding no\nPrintMotd no\n"
    )


@dataclass
class Sshd:
    dir: Path
    port: int
    ips: list[str]
    user: str
    proc: subprocess.Popen[bytes] | None = None
    extra_config: str = ""
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.dir / "sshd.log"

    @property
    def block(self) -> Block:
        """The loopback block of its addresses, to make a demo profile whose nodes it serves."""
        return Block(self.ips[0].rsplit(".", 1)[0])

    @property
    def client_key(self) -> str:
        return str(self.dir / "client_key")

    @property
    def known_hosts(self) -> str:
        return str(self.dir / "known_hosts")

    @property
    def empty_config(self) -> str:
        return str(self.dir / "ssh_config_empty")

    def node(self, ip: str, name: str | None = None, run_dir: str = "~/.cache/cpconsole", **ssh: object) -> NodePlan:
        settings = SshSettings(
            user=self.user,
            port=self.port,
            identity_file=self.client_key,
            known_hosts=self.known_hosts,
            config_file=self.empty_config,
        ).model_copy(update=ssh)
        return NodePlan(name=name or ip, host=ip, address=ip, transport="ssh", ssh=settings, chips=16, run_dir=run_dir)

    def write_config(self) -> None:
        listen = [f"{ip}:{self.port}" for ip in self.ips]
        config = sshd_config(listen, self.dir, self.dir / "sshd.pid") + "MaxStartups 200:30:400\nLogLevel INFO\n"
        (self.dir / "sshd_config").write_text(config + self.extra_config)

    def start(self) -> None:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        self.write_config()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                for ip in self.ips:
                    socket.create_connection((ip, self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not start: {self.log.read_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the listener and every session it forked: connections really drop."""
        if self.proc is None:
            return
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        sessions = [c for c in children if c.name().startswith("sshd")]
        self.proc.terminate()
        for child in sessions:
            with contextlib.suppress(psutil.Error):
                child.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def make_sshd(ips: list[str]) -> Sshd:
    # not tmp_path: pytest's /tmp/pytest-of-root is 0700 and the login user must read these files
    directory = Path(tempfile.mkdtemp(prefix="cpsshd-"))
    directory.chmod(0o755)
    port = free_port(ips[0])
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / key)], check=True)
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    (directory / "authorized_keys").chmod(0o644)
    host_pub = " ".join((directory / "host_key.pub").read_text().split()[:2])
    (directory / "known_hosts").write_text("".join(f"[{ip}]:{port} {host_pub}\n" for ip in ips))
    (directory / "ssh_config_empty").write_text("")
    server = Sshd(directory, port, ips, login_user())
    server.start()
    return server


def node_root() -> str:
    """A directory every login user can write: run directories of the simulated nodes."""
    directory = tempfile.mkdtemp(prefix="cpnodes-")
    os.chmod(directory, 0o1777)
    return directory
