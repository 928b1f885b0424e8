"""What a rule yields, and where in the profile a vllm_args flag is written."""

from __future__ import annotations

from .loader import Loc, Severity
from .schema import Instance

Hit = tuple[Severity, Loc, str]  # severity, path in the profile, message with its fix


def arg_path(name: str, inst: Instance, flag: str) -> Loc:
    key = inst.arg_key(flag)
    return ("instances", name, "vllm_args", key) if key else ("instances", name)
