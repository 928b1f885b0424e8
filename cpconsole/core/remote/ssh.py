"""SSHTransport: one asyncssh connection per node, shared by every run, tail and poll.

Behaves as OpenSSH users expect: ~/.ssh/config (or the profile's config file) for aliases,
HostName, Port, User, IdentityFile and ProxyJump; known_hosts and ssh-agent; host keys always
verified unless the profile turns that off explicitly. Output is read as bytes, so one invalid
UTF-8 byte can never close the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..plan import NodePlan
from .asyncssh_lib import asyncssh
from .base import DEFAULT_TIMEOUT, ShellTransport, Stream
from .errors import ConnectFailed, HostKeyError, RemoteError, RemoteTimeout, Unreachable
from .tailing import Backoff
from .types import RunResult

CHUNK = 1 << 18


class SSHStream:
    def __init__(self, process: asyncssh.SSHClientProcess[bytes], node: str) -> None:
        self._process = process
        self._node = node

    async def read(self) -> bytes:
        try:
            return await self._process.stdout.read(CHUNK)
        except (asyncssh.Error, OSError) as exc:
            raise RemoteError(self._node, f"stream lost: {exc}") from None

    async def close(self) -> None:
        self._process.close()  # the remote tail exits when its output pipe closes


def _expand(path: str | None) -> str | None:
    return str(Path(path).expanduser()) if path else None


class SSHTransport(ShellTransport):
    def __init__(
        self,
        node: NodePlan,
        *,
        connect_timeout: float = 10.0,
        keepalive_interval: float = 15.0,
        keepalive_count_max: int = 3,
    ) -> None:
        super().__init__(node.name)
        self.plan = node
        self.connect_timeout = connect_timeout
        self._keepalive = (keepalive_interval, keepalive_count_max)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        self._backoff = Backoff(first=1.0, ceiling=30.0)
        self._retry_at = 0.0
        self._last_error = ""
        # (host, port) → the connection that carries it and its listener: a lost connection's go with it
        self._forwards: dict[tuple[str, int], tuple[asyncssh.SSHClientConnection, asyncssh.SSHListener]] = {}
        self._forward_lock = asyncio.Lock()

    # ------------------------------------------------------------ connection

    def connect_options(self) -> dict[str, Any]:
        ssh = self.plan.ssh
        options: dict[str, Any] = {
            "connect_timeout": self.connect_timeout,
            "keepalive_interval": self._keepalive[0],
            "keepalive_count_max": self._keepalive[1],
        }
        if ssh.config_file:
            options["config"] = [_expand(ssh.config_file)]
        if ssh.port is not None:
            options["port"] = ssh.port
        if ssh.user is not None:
            options["username"] = ssh.user
        if ssh.identity_file:
            options["client_keys"] = [_expand(ssh.identity_file)]
        if ssh.proxy_jump:
            options["tunnel"] = ssh.proxy_jump
        if not ssh.verify_host_keys:
            options["known_hosts"] = None
        elif ssh.known_hosts:
            options["known_hosts"] = _expand(ssh.known_hosts)
        return options

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            self._conn = None
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise Unreachable(self.node, f"{self._last_error}; retrying in {wait:.1f} s", wait)
            try:
                conn = await asyncio.wait_for(
                    asyncssh.connect(self.plan.host, **self.connect_options()), self.connect_timeout + 1
                )
            except Exception as exc:  # every failure becomes a typed error naming the node
                error = await self._explain(exc)
                self._last_error = error.what
                self._retry_at = time.monotonic() + self._backoff.next()
                raise error from None
            self._backoff.reset()
            self._conn = conn
            return conn

    async def _explain(self, exc: BaseException) -> ConnectFailed:
        target = f"{self.plan.host}" + (f":{self.plan.ssh.port}" if self.plan.ssh.port else "")
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return await self._host_key_error(target)
        if isinstance(exc, asyncssh.PermissionDenied):
            return ConnectFailed(self.node, f"login to {target} refused: {exc.reason}")
        if isinstance(exc, TimeoutError | asyncssh.misc.ConnectionLost | asyncssh.TimeoutError):
            return ConnectFailed(
                self.node, f"{target} did not complete the SSH handshake within {self.connect_timeout:g} s"
            )
        if isinstance(exc, OSError):
            return ConnectFailed(self.node, f"cannot connect to {target}: {exc.strerror or exc}")
        return ConnectFailed(self.node, f"cannot connect to {target}: {exc}")

    async def _host_key_error(self, target: str) -> HostKeyError:
        """Name the key we were offered and say whether it is new or has changed."""
        fingerprint = None
        options = {k: v for k, v in self.connect_options().items() if k in ("port", "tunnel", "config")}
        try:
            key = await asyncio.wait_for(asyncssh.get_server_host_key(self.plan.host, **options), self.connect_timeout)
            fingerprint = key.get_fingerprint() if key else None
        except Exception:  # the explanation is best effort; the refusal stands anyway
            fingerprint = None
        known = _expand(self.plan.ssh.known_hosts) or str(Path("~/.ssh/known_hosts").expanduser())
        changed = False
        try:
            port = self.plan.ssh.port
            trusted = asyncssh.read_known_hosts(known).match(self.plan.host, "", port)[0]
            changed = bool(trusted)
        except (OSError, ValueError):
            changed = False
        shown = fingerprint or "fingerprint unknown"
        if changed:
            what = (
                f"host key of {target} has CHANGED ({shown}); known_hosts {known} holds another key. "
                "Someone may be intercepting: verify the new key out of band before replacing the entry"
            )
        else:
            what = (
                f"host key of {target} is not trusted ({shown}); it is not in {known}. Verify it, then add it: "
                f"ssh-keyscan{' -p ' + str(port) if (port := self.plan.ssh.port) else ''} {self.plan.host} >> {known}"
            )
        return HostKeyError(self.node, what, fingerprint)

    async def forward(self, host: str, port: int, path: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Make the UNIX socket `path` on this machine carry connections to host:port as the node
        reaches it, over the node's SSH connection (asyncssh's local path forwarding; a socket in a
        directory only this user may enter, unlike a loopback port any local user could use).
        Again after the connection was lost; nothing when it already does."""
        async with self._forward_lock:
            try:
                conn = await asyncio.wait_for(self._connection(), timeout)
                known = self._forwards.get((host, port))
                if known is not None and known[0] is conn:
                    return
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # the listener of a lost connection left it behind
                listener = await asyncio.wait_for(conn.forward_local_path_to_port(path, host, port), timeout)
            except RemoteError:
                raise
            except TimeoutError:
                raise RemoteTimeout(self.node, f"no forwarding to {host}:{port} within {timeout:g} s") from None
            except (asyncssh.Error, OSError) as exc:
                await self._drop()
                raise RemoteError(self.node, f"cannot forward to {host}:{port}: {exc}") from None
            self._forwards[host, port] = (conn, listener)

    async def close(self) -> None:
        for _, listener in self._forwards.values():
            listener.close()
        self._forwards.clear()
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()

    # ------------------------------------------------------------ primitives

    async def run(
        self, command: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, input: bytes | None = None
    ) -> RunResult:
        # always POSIX sh, whatever the login shell is
        line = "exec sh -c " + shlex.quote(command) if isinstance(command, str) else shlex.join(command)
        deadline = time.monotonic() + timeout
        try:
            conn = await asyncio.wait_for(self._connection(), timeout)
            left = max(0.1, deadline - time.monotonic())
            result = await asyncio.wait_for(conn.run(line, input=input, encoding=None, check=False), left)
        except RemoteError:
            raise
        except TimeoutError:
            raise RemoteTimeout(self.node, f"no answer within {timeout:g} s") from None
        except (asyncssh.Error, OSError) as exc:
            await self._drop()
            raise RemoteError(self.node, f"connection lost: {exc}") from None
        stdout = result.stdout if isinstance(result.stdout, bytes) else b""
        stderr = result.stderr if isinstance(result.stderr, bytes) else b""
        return RunResult(result.exit_status, stdout, stderr)

    async def open_stream(self, script: str) -> Stream:
        waited = self.connect_timeout + 2
        try:
            conn = await asyncio.wait_for(self._connection(), waited)
            process = await asyncio.wait_for(
                conn.create_process("exec sh -c " + shlex.quote(script), encoding=None, stdin=asyncssh.DEVNULL), waited
            )
        except TimeoutError:  # as `run` says it: a RemoteError, never a bare timeout
            raise RemoteTimeout(self.node, f"no stream within {waited:g} s") from None
        except (asyncssh.Error, OSError) as exc:
            await self._drop()
            raise RemoteError(self.node, f"connection lost: {exc}") from None
        return SSHStream(process, self.node)

    async def _drop(self) -> None:
        async with self._lock:
            if self._conn is not None and self._conn.is_closed():
                self._conn = None
