"""Typed failures of the remote layer. Each names the node it happened on and what happened."""

from __future__ import annotations

from ..safetext import terminal_safe


class RemoteError(Exception):
    """Something failed on or on the way to a node."""

    def __init__(self, host: str, what: str) -> None:
        self.host = host
        self.what = terminal_safe(what)  # may quote a node's stderr
        super().__init__(f"{host}: {self.what}")


class ConnectFailed(RemoteError):
    """The node could not be reached or logged into."""


class HostKeyError(ConnectFailed):
    """The node's host key is unknown or has changed; we do not talk to it."""

    def __init__(self, host: str, what: str, fingerprint: str | None) -> None:
        self.fingerprint = fingerprint
        super().__init__(host, what)


class Unreachable(ConnectFailed):
    """A recent attempt failed; we wait out the backoff instead of hammering the node."""

    def __init__(self, host: str, what: str, retry_in: float) -> None:
        self.retry_in = retry_in
        super().__init__(host, what)


class RemoteTimeout(RemoteError):
    """The node did not answer in time."""


class CommandFailed(RemoteError):
    """A command cpconsole relies on exited non-zero."""

    def __init__(self, host: str, what: str, exit_code: int | None, stderr: bytes) -> None:
        self.exit_code = exit_code
        self.stderr = stderr
        detail = stderr.decode("utf-8", "replace").strip().splitlines()
        super().__init__(host, f"{what} (exit {exit_code}{': ' + detail[-1] if detail else ''})")


class NotOurs(RemoteError):
    """A node's records name a process cpconsole did not start there: nothing is done to it."""


class AlreadyRunning(RemoteError):
    """A process with this run directory is still alive; start refused."""
