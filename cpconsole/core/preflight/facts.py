"""What one node's preflight found: its checks, and what the cross-node checks compare."""

from __future__ import annotations

from dataclasses import dataclass, field

from .npu_network import ChipConf
from .report import Check

UNKNOWN = "-"  # a version that could not be read: not installed, or no such file


@dataclass
class NodeFacts:
    """One node's checks and what the cross-node checks need from it."""

    checks: list[Check] = field(default_factory=list)
    reachable: bool = False
    npu_ips: dict[int, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # software → version, UNKNOWN when absent
    chip_names: set[str] = field(default_factory=set)  # as npu-smi names them (Ascend910 on A3)
    serve_help: str | None = None  # `vllm serve --help=all` of the vLLM installed there
    tls: dict[int, bool] = field(default_factory=dict)  # per chip: TLS switched on (hccn_tool -tls -g)
    chip_conf: dict[int, ChipConf] | None = None  # per chip: its /etc/hccn.conf lines; None: unreadable
    weights: str | None = None  # fingerprint of the model's weights on this node
    shards: dict[str, int] = field(default_factory=dict)  # its shards and their sizes, when all are there
