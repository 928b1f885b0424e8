"""Hosts of the tests' own, in network namespaces (as root): a bastion this machine reaches, and
behind it a node network it does not — the usual jump-host set-up, where the console reaches the
nodes by SSH only. Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range, never routed
outside a test bed), numbered by this run's loopback claim so that two suites side by side never
meet; this machine's route to the node network is `unreachable`, so a direct attempt fails at once
and no packet leaves it.

    bastion link: 198.18.R.1 (this machine) — 198.18.R.2 (bastion, sshd :22)
    node network: 198.19.R.1 (bastion) — 198.19.R.11, .12, .13 (the demo's three nodes, sshd :22)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .loopback import Block
from .sshd import SSHD, sshd_config

NODES = (11, 12, 13)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass(frozen=True)
class BehindBastion:
    bastion: str  # the bastion's address on the link to this machine
    nodes: Block  # the node network: its .11, .12, .13 are the demo's three nodes
    ssh_config: Path  # Host bastion, and ProxyJump bastion for every node address
    netns: str  # the node network's namespace


def _sshd(netns: str, directory: Path, addresses: list[str]) -> subprocess.Popen[bytes]:
    config = directory / f"sshd_config.{netns}"
    config.write_text(sshd_config([f"{a}:22" for a in addresses], directory, directory / f"sshd.{netns}.pid"))
    log = (directory / f"sshd.{netns}.log").open("ab")
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns, SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log
    )
    deadline = time.monotonic() + 10
    while (directory / f"sshd.{netns}.log").read_text().count("Server listening on") < len(addresses):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sshd in {netns} did not start: {(directory / f'sshd.{netns}.log').read_text()}")
        time.sleep(0.05)
    return process


@contextlib.contextmanager
def behind_bastion() -> Iterator[BehindBastion]:
    """The bastion and the node network, torn down after (every process left in them killed)."""
    octet = Block.fresh().prefix.split(".")[1]  # this run's claim: no other suite uses it
    link, net = f"198.18.{octet}", f"198.19.{octet}"
    bastion_ns, node_ns = f"cpb{octet}", f"cpn{octet}"
    directory = Path(tempfile.mkdtemp(prefix="cpbastion-"))
    directory.chmod(0o755)
    sshds: list[subprocess.Popen[bytes]] = []
    try:
        for ns in (bastion_ns, node_ns):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", f"cpbh{octet}", "type", "veth", "peer", "name", "eth0", "netns", bastion_ns)
        ip("addr", "add", f"{link}.1/24", "dev", f"cpbh{octet}")
        ip("link", "set", f"cpbh{octet}", "up")
        ip("-n", bastion_ns, "addr", "add", f"{link}.2/24", "dev", "eth0")
        ip("-n", bastion_ns, "link", "set", "eth0", "up")
        ip("-n", bastion_ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", node_ns)
        ip("-n", bastion_ns, "addr", "add", f"{net}.1/24", "dev", "eth1")
        ip("-n", bastion_ns, "link", "set", "eth1", "up")
        for last in NODES:
            ip("-n", node_ns, "addr", "add", f"{net}.{last}/24", "dev", "eth0")
        ip("-n", node_ns, "link", "set", "eth0", "up")
        ip("route", "add", "unreachable", f"{net}.0/24")  # from here: refused at once, nothing sent
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / key)], check=True)
        (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
        host_key = " ".join((directory / "host_key.pub").read_text().split()[:2])
        nodes = [f"{net}.{last}" for last in NODES]
        (directory / "known_hosts").write_text("".join(f"{a} {host_key}\n" for a in [f"{link}.2", *nodes]))
        sshds += [_sshd(bastion_ns, directory, [f"{link}.2"]), _sshd(node_ns, directory, nodes)]
        config = directory / "ssh_config"
        config.write_text(
            f"""Host bastion
    HostName {link}.2
Host {net}.*
    ProxyJump bastion
Host *
    Port 22
    User root
    IdentityFile {directory}/client_key
    IdentitiesOnly yes
    UserKnownHostsFile {directory}/known_hosts
"""
        )
        yield BehindBastion(f"{link}.2", Block(net), config, node_ns)
    finally:
        for ns in (node_ns, bastion_ns):  # whatever still runs in them: the sshds, a process left behind
            found = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
            for pid in found.stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        for process in sshds:
            process.wait(10)
        subprocess.run(["ip", "route", "del", "unreachable", f"{net}.0/24"], capture_output=True, check=False)
        for ns in (node_ns, bastion_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", f"cpbh{octet}"], capture_output=True, check=False)
        shutil.rmtree(directory, ignore_errors=True)
