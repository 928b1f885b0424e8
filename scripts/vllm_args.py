"""vLLM's own `vllm serve` arguments, read from its parser and stored as data for `validate`.

    PYTHON_WITH_VLLM scripts/vllm_args.py            # writes cpconsole/core/profile/vllm_args/<version>.json

Run it with a Python that can import the vLLM release to describe (the CPU test bed's venv, or a
released wheel unpacked on PYTHONPATH next to it: 0.15.0's came from PyPI's CUDA wheel unpacked
beside the test bed's venv, its dist-info version marked `+cpu` so that vLLM picks the CPU platform,
gguf and diskcache added). It builds the parser exactly as `vllm serve`
does and writes, for each option, its flags, its kind (flag, int, float, str, json) and its choices.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "cpconsole" / "core" / "profile" / "vllm_args"


def serve_parser() -> argparse.ArgumentParser:
    """The parser of `vllm serve`, made by its own subcommand (the modules behind it moved between
    releases; the subcommand did not)."""
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser  # type: ignore[import-not-found]
    except ImportError:
        from vllm.utils import FlexibleArgumentParser  # type: ignore[import-not-found,no-redef]
    from vllm.entrypoints.cli.serve import ServeSubcommand  # type: ignore[import-not-found]

    top = FlexibleArgumentParser(prog="vllm")
    parser: argparse.ArgumentParser = ServeSubcommand().subparser_init(top.add_subparsers())
    return parser


def kind_of(action: argparse.Action) -> str:
    """What the option takes, found by asking its own converter (vLLM wraps most of them in
    closures — optional_type, parse_dataclass — whose names say nothing)."""
    if action.nargs == 0:
        return "flag"  # store_true / store_false / BooleanOptionalAction
    convert = action.type
    if convert is None or convert is str:
        return "str"

    def gives(text: str) -> object:
        try:
            return convert(text)  # type: ignore[operator]
        except Exception:  # the converter's own refusal: argparse would say "invalid value"
            return None

    if gives("{}") is not None and not isinstance(gives("{}"), str):
        return "json"  # a JSON object (a config dataclass, a dict)
    if isinstance(gives("12"), int) and gives("1.5") is None:
        return "int"
    if isinstance(gives("1.5"), float):
        return "float"
    return "str"


def describe(parser: argparse.ArgumentParser) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for action in parser._actions:
        flags = [f for f in action.option_strings if f.startswith("--")]
        if not flags or action.dest in ("help",):
            continue
        entry: dict[str, Any] = {"flags": sorted(action.option_strings), "kind": kind_of(action)}
        if action.choices is not None:
            entry["choices"] = sorted(str(c) for c in action.choices)
        if action.nargs not in (None, 0):
            entry["nargs"] = str(action.nargs)
        args[action.dest] = entry
    return args


def main() -> None:
    import vllm  # type: ignore[import-not-found]

    version = str(vllm.__version__).split("+")[0]
    data = {"vllm": version, "source": "vllm serve's parser (scripts/vllm_args.py)", "args": describe(serve_parser())}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{version}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path} ({len(data['args'])} arguments)", file=sys.stderr)


if __name__ == "__main__":
    main()
