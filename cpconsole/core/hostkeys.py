"""Whether an SSH node's host key is verified: said on every verb and on the board. Light on
purpose — asyncssh (a tenth of a second to import) is asked only when an ssh_config could turn
verification off; a verb that only renders a profile never pays for it otherwise."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .plan import NodePlan

# what in an ssh_config can change known_hosts for a host (Include and Match can hide it)
_CAN_TURN_OFF = re.compile(r"^\s*(userknownhostsfile|include|match)\b", re.IGNORECASE | re.MULTILINE)


def _expand(path: str | None) -> str | None:
    return str(Path(path).expanduser()) if path else None


def _config_may_turn_it_off(config_file: str | None) -> bool:
    """Whether the ssh_config asyncssh would read (the profile's, else ~/.ssh/config) says
    anything that could change known_hosts; unreadable counts as may."""
    path = Path(_expand(config_file) or Path("~/.ssh/config").expanduser())
    if not config_file and not path.exists():
        return False
    try:
        return bool(_CAN_TURN_OFF.search(path.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return True


def host_keys_unverified(node: NodePlan) -> str | None:
    """Why the host key of an SSH node is not verified, or None when it is: the profile's
    `verify_host_keys: false`, or ssh_config's `UserKnownHostsFile none` (which asyncssh obeys;
    it does not read StrictHostKeyChecking and verifies then as always)."""
    if node.transport != "ssh":
        return None
    if not node.ssh.verify_host_keys:
        return "the profile sets verify_host_keys: false"
    if not _config_may_turn_it_off(node.ssh.config_file):
        return None
    # the config says something about known hosts: let asyncssh read it as it will
    from .remote.asyncssh_lib import asyncssh

    config = [_expand(node.ssh.config_file)] if node.ssh.config_file else ()
    try:
        options = asyncssh.SSHClientConnectionOptions(host=node.host, config=config, username=node.ssh.user or ())
    except (asyncssh.Error, OSError, ValueError) as exc:
        return f"its ssh_config could not be read ({exc}), so whether it verifies is unknown"
    if options.known_hosts is None:
        return "ssh_config sets UserKnownHostsFile none"
    return None


def unverified_nodes(nodes: Sequence[NodePlan]) -> list[str]:
    """One line per SSH node whose host key is not verified."""
    return [f"{n.name}: SSH host key NOT verified ({why})" for n in nodes if (why := host_keys_unverified(n))]
