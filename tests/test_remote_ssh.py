"""SSH as OpenSSH users expect it, against a real sshd: host keys, ssh_config, ProxyJump,
dead and hanging nodes that never hold up the others."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from cpconsole.core.remote import ConnectFailed, HostKeyError, RemoteError, SSHTransport, Unreachable

from .loopback import Block
from .sshd import Sshd, free_port


def fingerprint(sshd: Sshd) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(sshd.dir / "host_key.pub")], capture_output=True, text=True)
    return out.stdout.split()[1]


async def test_run_over_ssh_lands_on_the_dialled_node(sshd: Sshd) -> None:
    node = SSHTransport(sshd.node(sshd.ips[2]))
    result = await node.run('echo "$SSH_CONNECTION"; id -un')
    await node.close()
    connection, user = result.text().splitlines()
    assert connection.split()[2:] == [sshd.ips[2], str(sshd.port)]
    assert user == sshd.user


async def test_unknown_host_key_is_refused_with_its_fingerprint(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ip = sshd.ips[1]
    node = SSHTransport(sshd.node(ip, known_hosts=str(empty)))
    with pytest.raises(HostKeyError) as caught:
        await node.run("true")
    error = caught.value
    assert error.host == ip and error.fingerprint == fingerprint(sshd)
    assert f"host key of {ip}:{sshd.port} is not trusted ({fingerprint(sshd)}); it is not in {empty}" in str(error)
    assert f"ssh-keyscan -p {sshd.port} {ip} >> {empty}" in str(error)


async def test_changed_host_key_is_refused_and_called_changed(sshd: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    ip = sshd.ips[1]
    known.write_text(f"[{ip}]:{sshd.port} {' '.join(Path(f'{other}.pub').read_text().split()[:2])}\n")
    node = SSHTransport(sshd.node(ip, known_hosts=str(known)))
    with pytest.raises(HostKeyError, match=rf"host key of {re.escape(ip)}:\d+ has CHANGED \(SHA256:"):
        await node.run("true")


async def test_verification_off_is_explicit_and_then_connects(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    node = SSHTransport(sshd.node(sshd.ips[1], known_hosts=str(empty), verify_host_keys=False))
    assert (await node.run("echo ok")).stdout == b"ok\n"
    await node.close()


@pytest.fixture
def ssh_config(sshd: Sshd, tmp_path: Path) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(
        f"""Host jump
    HostName {sshd.ips[0]}
Host far
    HostName {sshd.ips[2]}
    ProxyJump jump
Host *
    Port {sshd.port}
    User {sshd.user}
    IdentityFile {sshd.client_key}
    IdentitiesOnly yes
    UserKnownHostsFile {sshd.known_hosts}
"""
    )
    return path


async def test_ssh_config_alias_and_proxyjump_are_honoured(sshd: Sshd, ssh_config: Path) -> None:
    plan = sshd.node("far").model_copy(
        update={
            "ssh": sshd.node("far").ssh.model_copy(
                update={
                    "user": None,
                    "port": None,
                    "identity_file": None,
                    "known_hosts": None,
                    "config_file": str(ssh_config),
                }
            )
        }
    )
    node = SSHTransport(plan)
    result = await node.run('echo "$SSH_CONNECTION"')
    assert result.text().split()[2] == sshd.ips[2]  # the node we asked for …
    peers = {c.raddr.ip for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == sshd.port}
    assert peers == {sshd.ips[0]}  # … reached only through the jump host
    await node.close()


async def test_a_hanging_node_times_out_while_others_keep_working(sshd: Sshd, silent_listener: tuple[str, int]) -> None:
    ip, port = silent_listener
    hanging = SSHTransport(sshd.node(ip, port=port), connect_timeout=1.5)
    healthy = SSHTransport(sshd.node(sshd.ips[0]))
    started = time.monotonic()
    stuck = asyncio.create_task(hanging.run("true", timeout=10))
    for _ in range(5):
        await healthy.run("true")
    assert not stuck.done()  # the healthy node answered five times while the other still hung
    with pytest.raises(ConnectFailed, match=r"did not complete the SSH handshake within 1\.5 s"):
        await stuck
    assert time.monotonic() - started >= 1.4  # it waited for its own timeout, not less
    await healthy.close()


async def test_a_down_node_fails_fast_then_backs_off(sshd: Sshd) -> None:
    nowhere = Block.fresh().ip(15)  # no one listens there
    down = SSHTransport(sshd.node(nowhere, port=free_port(nowhere)))
    with pytest.raises(ConnectFailed, match=rf"cannot connect to {re.escape(nowhere)}"):
        await down.run("true")
    with pytest.raises(Unreachable) as caught:
        await down.run("true")  # within the backoff: no new attempt
    assert 0 < caught.value.retry_in <= 1.0
    assert "retrying in" in str(caught.value)


async def test_one_connection_is_shared_by_runs_and_streams(sshd: Sshd, nodes_dir: str) -> None:
    node = SSHTransport(sshd.node(sshd.ips[1]))
    log = Path(nodes_dir, "shared.log")
    log.write_text("x\n")
    tails = [node.tail(str(log)) for _ in range(3)]
    firsts = await asyncio.gather(*(anext(t) for t in tails))
    await asyncio.gather(*(node.run("true") for _ in range(10)))
    ports = {c.laddr.port for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == sshd.port}
    assert len(ports) == 1
    assert all(getattr(f, "data", None) == b"x\n" for f in firsts)
    for t in tails:
        await t.aclose()  # type: ignore[attr-defined]
    await node.close()


async def test_a_stream_to_a_hanging_node_is_a_remote_error(sshd: Sshd, silent_listener: tuple[str, int]) -> None:
    ip, port = silent_listener
    hanging = SSHTransport(sshd.node(ip, port=port), connect_timeout=1)
    with pytest.raises(RemoteError, match="within"):  # as `run` says it, never a bare TimeoutError
        await hanging.open_stream("echo never")
    await hanging.close()
