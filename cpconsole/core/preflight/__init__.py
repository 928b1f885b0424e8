"""Preflight: find the environment problems that otherwise show up fifteen minutes into model
loading — an unreachable node, a missing or unhealthy chip, a DOWN NPU link, a peer NPU that does
not answer, a taken port, a model whose config.json still says float16, a container without all
its chips, different software on the nodes — in seconds, on all nodes at once, before anything starts."""

from .npu_network import ping_pairs
from .report import ALL_NODES, Check, Line, Status, fold, tally
from .run import run_preflight

__all__ = ["ALL_NODES", "Check", "Line", "Status", "fold", "ping_pairs", "run_preflight", "tally"]
