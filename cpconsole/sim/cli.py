"""`cpconsole-sim` (or `python -m cpconsole.sim`): `vllm serve …`, `npu-smi …`, `hccn_tool …`, `hccn.conf`, `python …`,
`install-shims DIR` (writes `vllm`, `npu-smi` and `hccn_tool` commands into DIR)."""

from __future__ import annotations

import sys


def install_shims(directory: str) -> int:
    import shlex  # here: hccn_tool runs this module 48 times per node in a preflight; keep it light
    from pathlib import Path

    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for name, tool in (("vllm", "vllm"), ("npu-smi", "npu-smi"), ("hccn_tool", "hccn_tool")):
        path = target / name
        path.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m cpconsole.sim {tool} "$@"\n')
        path.chmod(0o755)
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    tool, rest = argv[0], argv[1:]
    if tool == "vllm":
        from .serve import main as serve

        return serve(rest)
    if tool == "npu-smi":
        from .npu_smi import main as npu_smi

        return npu_smi(rest)
    if tool == "hccn_tool":
        from .hccn_tool import main as hccn_tool

        return hccn_tool(rest)
    if tool == "hccn.conf":
        from .hccn_tool import conf_main

        return conf_main(rest)
    if tool == "python":
        from .pyenv import main as python

        return python(rest)
    if tool == "install-shims" and len(rest) == 1:
        return install_shims(rest[0])
    print(__doc__, file=sys.stderr)
    return 2


def run() -> None:
    sys.exit(main(sys.argv[1:]))
