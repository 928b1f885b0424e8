"""`vllm serve` as the simulator parses it: the flags the deployments use, vLLM's spellings
(`_` or `-`, `--no-` for booleans, short aliases), and vLLM's refusals."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any, NoReturn

VERSION = "0.13.0"


class ServeArgumentError(Exception):
    """A flag vLLM would refuse; the message is vLLM's."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ServeArgumentError(f"{self.prog}: error: {message}")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vllm serve", add_help=False, allow_abbrev=True)
    p.add_argument("model_tag")
    add = p.add_argument
    add("--host", default=None)
    add("--port", type=int, default=8000)
    add("--served-model-name", nargs="+", default=None)
    add("--seed", type=int, default=0)
    add("--tokenizer", default=None)
    add("--dtype", default="auto")
    add("--quantization", "-q", default=None)
    add("--tensor-parallel-size", "-tp", type=int, default=1)
    add("--pipeline-parallel-size", "-pp", type=int, default=1)
    add("--prefill-context-parallel-size", "-pcp", type=int, default=1)
    add("--decode-context-parallel-size", "-dcp", type=int, default=1)
    add("--cp-kv-cache-interleave-size", type=int, default=1)
    add("--data-parallel-size", "-dp", type=int, default=1)
    add("--data-parallel-size-local", "-dpl", type=int, default=None)
    add("--data-parallel-start-rank", "-dpr", type=int, default=0)
    add("--data-parallel-address", "-dpa", default=None)
    add("--data-parallel-rpc-port", "-dpp", type=int, default=None)
    add("--api-server-count", "-asc", type=int, default=1)
    add("--distributed-executor-backend", default=None)
    add("--nnodes", "-n", type=int, default=1)
    add("--node-rank", "-r", type=int, default=0)
    add("--master-addr", default="127.0.0.1")
    add("--master-port", type=int, default=29501)
    add("--block-size", type=int, default=None)
    add("--max-model-len", type=int, default=None)
    add("--max-num-seqs", type=int, default=None)
    add("--max-num-batched-tokens", type=int, default=None)
    add("--gpu-memory-utilization", type=float, default=0.9)
    add("--kv-cache-memory-bytes", default=None)
    add("--speculative-config", type=_json, default=None)
    add("--kv-transfer-config", type=_json, default=None)
    add("--compilation-config", "-cc", type=_json, default=None)
    add("--additional-config", type=_json, default=None)
    for flag in (
        "--headless",
        "--enforce-eager",
        "--trust-remote-code",
        "--enable-expert-parallel",
        "--enable-chunked-prefill",
        "--enable-prefix-caching",
        "--data-parallel-hybrid-lb",
        "--disable-log-stats",
        "--disable-uvicorn-access-log",
        "--enable-log-requests",
    ):
        add(flag, action=argparse.BooleanOptionalAction, default=None)
    return p


def normalise(argv: list[str]) -> list[str]:
    """vLLM's FlexibleArgumentParser reads `--max_model_len` as `--max-model-len`."""
    out = []
    for word in argv:
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            word = name.replace("_", "-") + eq + value
        out.append(word)
    return out


@dataclass(frozen=True)
class ServeArgs:
    ns: argparse.Namespace

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ns, name)

    @property
    def model_name(self) -> str:
        return str(self.ns.served_model_name[0]) if self.ns.served_model_name else str(self.ns.model_tag)

    @property
    def block(self) -> int:
        return int(self.ns.block_size or 128)

    @property
    def world_size(self) -> int:
        return int(
            self.ns.tensor_parallel_size * self.ns.prefill_context_parallel_size * self.ns.pipeline_parallel_size
        )

    @property
    def kv(self) -> dict[str, Any]:
        return dict(self.ns.kv_transfer_config or {})

    @property
    def kv_role(self) -> str | None:
        role = self.kv.get("kv_role")
        return str(role) if role else None

    @property
    def num_speculative_tokens(self) -> int:
        return int((self.ns.speculative_config or {}).get("num_speculative_tokens", 0))

    @property
    def dp_local(self) -> int:
        return int(self.ns.data_parallel_size_local or self.ns.data_parallel_size)

    @property
    def serves_http(self) -> bool:
        return not self.ns.headless

    def non_default(self) -> dict[str, Any]:
        defaults = vars(build_parser().parse_args([self.ns.model_tag]))
        return {k: v for k, v in vars(self.ns).items() if v != defaults.get(k) or k == "model_tag"}


def parse(argv: list[str]) -> ServeArgs:
    """Parse and check like vLLM 0.13 + vllm-ascend; raises ServeArgumentError."""
    args = ServeArgs(build_parser().parse_args(normalise(argv)))
    tp, dcp, pcp = args.tensor_parallel_size, args.decode_context_parallel_size, args.prefill_context_parallel_size
    if dcp > tp or tp % dcp:
        raise ServeArgumentError(
            f"AssertionError: tensor_parallel_size ({tp}) must be divisible by decode_context_parallel_size ({dcp})"
        )
    interleave = args.cp_kv_cache_interleave_size
    if args.ns.kv_transfer_config and pcp * dcp > 1 and interleave != args.block:
        raise ServeArgumentError(
            f"AssertionError: cp_kv_cache_interleave_size({interleave}) and block_size({args.block}) needs to be "
            "equal if use pcp or dcp > 1 in P/D disaggregate and kv pool scenario."
        )
    if args.node_rank >= args.nnodes:
        raise ServeArgumentError(
            f"ValueError: node_rank ({args.node_rank}) must be smaller than nnodes ({args.nnodes})"
        )
    return args
