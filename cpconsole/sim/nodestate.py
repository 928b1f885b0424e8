"""What runs on a simulated node, for its simulated npu-smi: each sim process publishes its
chips, HBM and activity to the node's state directory; dead processes drop out.

The node is CPCONSOLE_SIM_NODE (else HCCL_IF_IP, else 127.0.0.1); the directory root is
CPCONSOLE_SIM_STATE (default /tmp/cpconsole-sim-<uid>)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def node_name() -> str:
    connection = os.environ.get("SSH_CONNECTION", "").split()
    return (
        os.environ.get("CPCONSOLE_SIM_NODE")
        or os.environ.get("HCCL_IF_IP")
        or (connection[2] if len(connection) >= 3 else "")
        or "127.0.0.1"
    )


def node_dir(node: str | None = None) -> Path:
    root = Path(os.environ.get("CPCONSOLE_SIM_STATE") or f"/tmp/cpconsole-sim-{os.getuid()}")
    return root / (node or node_name())


def publish(entry: dict[str, Any], node: str | None = None) -> None:
    directory = node_dir(node)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{entry['pid']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)


def withdraw(pid: int, node: str | None = None) -> None:
    (node_dir(node) / f"{pid}.json").unlink(missing_ok=True)


def processes(node: str | None = None) -> list[dict[str, Any]]:
    """Live sim processes of the node, oldest first."""
    import psutil  # here, not at the top: hccn_tool, which never asks, must start fast

    found = []
    for path in sorted(node_dir(node).glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            alive = psutil.Process(int(entry["pid"])).status() != psutil.STATUS_ZOMBIE
        except (OSError, ValueError, KeyError, psutil.Error):
            alive = False
        if alive:
            found.append(entry)
        else:
            path.unlink(missing_ok=True)
    return found
