"""Rules about how the engines will serve: request lengths against the context, the scheduler's
limits, and environment variables that are set by hand, have no effect, or are missing. Each
rule's source is in its docstring; the table of all rules is rules.RULES."""

from __future__ import annotations

from collections.abc import Iterator

from .hits import Hit, arg_path
from .loader import Loc
from .schema import Instance, Profile
from .topology import positive_int

DERIVED_ENV = ("HCCL_IF_IP", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "HCCL_SOCKET_IFNAME")


def every_env(profile: Profile) -> Iterator[tuple[Loc, dict[str, str]]]:
    """Each env mapping of the profile, with its path: defaults, nodes, instances, the proxy."""
    yield ("defaults", "env"), profile.defaults.env
    for name, node in profile.nodes.items():
        yield ("nodes", name, "env"), node.env
    for name, inst in profile.instances.items():
        yield ("instances", name, "env"), inst.env
    if profile.proxy:
        yield ("proxy", "env"), profile.proxy.env


def instance_envs(profile: Profile, inst: Instance) -> list[dict[str, str]]:
    """The env mappings an instance's processes get: defaults, its nodes', its own."""
    return [profile.defaults.env, *(profile.nodes[n].env for n in inst.nodes if n in profile.nodes), inst.env]


def derived_env(profile: Profile) -> Iterator[Hit]:
    for path, env in every_env(profile):
        for key in DERIVED_ENV:
            if key in env:
                yield "warning", (*path, key), f"{key} overrides the value derived from the node's address and nic"


KEY_ENV = ("VLLM_API_KEY", "OPENAI_API_KEY")


def keys_in_clear(profile: Profile) -> Iterator[Hit]:
    """An API key in vllm_args (`--api-key`) or in an env mapping is written into the launch
    scripts and shows in `ps` and `render`; the profile's api_key section keeps it off the nodes'
    disks (cpconsole's own rule, see README "Servers with a key")."""
    why = "would be written into launch scripts and shown by ps and render; give it in api_key (env or file)"
    for name, inst in profile.instances.items():
        if inst.arg_key("api_key"):
            yield "error", arg_path(name, inst, "api_key"), f"an API key in vllm_args {why}"
    for path, env in every_env(profile):
        for key in KEY_ENV:
            if key in env:
                yield "error", (*path, key), f"{key} in env {why}"


def open_door_proxy(profile: Profile) -> Iterator[Hit]:
    """A proxy that sends the key to the servers but asks none of its clients lets anyone use it:
    cpconsole's proxy then asks for the same key (--require-api-key); the example proxy cannot."""
    if profile.api_key and profile.proxy and not profile.proxy.is_cpconsoles:
        yield (
            "warning",
            ("proxy", "command"),
            "this proxy sends the api_key to the servers but asks its clients for none: anyone who reaches it "
            "uses the key; cpconsole's proxy asks for it (command: [python3, -m, cpconsole.proxy])",
        )


def shortest_context(profile: Profile) -> int | None:
    """The smallest max_model_len of the profile's instances: what a request through them all may
    hold, prompt and answer (None: no instance sets one)."""
    limits = [limit for inst in profile.instances.values() if (limit := positive_int(inst.arg("max_model_len")))]
    return min(limits, default=None)


def request_lengths(profile: Profile) -> Iterator[Hit]:
    wants: list[tuple[Loc, int, str]] = []
    if profile.smoke and profile.smoke.needle_tokens:
        total = profile.smoke.needle_tokens + profile.smoke.max_tokens
        wants.append((("smoke", "needle_tokens"), total, "smoke needle_tokens + max_tokens"))
    if profile.bench:
        total = profile.bench.random_input_len + profile.bench.random_output_len
        wants.append((("bench", "random_input_len"), total, "bench random_input_len + random_output_len"))
    for name, inst in profile.instances.items():
        limit = positive_int(inst.arg("max_model_len"))
        if limit is None:
            continue
        for path, total, what in wants:
            if total > limit:
                yield (
                    "error",
                    path,
                    f"{what} = {total} exceeds instances.{name} max_model_len {limit}; shorten the request "
                    "or raise max_model_len",
                )


def scheduler_limits(profile: Profile) -> Iterator[Hit]:
    """With chunked prefill off, vLLM's scheduler refuses max_num_batched_tokens below
    max_model_len (vllm/config/scheduler.py, SchedulerConfig._verify_args): the engine would die
    minutes into start-up instead of at validation."""
    for name, inst in profile.instances.items():
        if inst.arg("enable_chunked_prefill") is not False:
            continue
        batched, longest = positive_int(inst.arg("max_num_batched_tokens")), positive_int(inst.arg("max_model_len"))
        if batched is not None and longest is not None and batched < longest:
            yield (
                "error",
                arg_path(name, inst, "max_num_batched_tokens"),
                f"max_num_batched_tokens {batched} is below max_model_len {longest} with chunked prefill off: "
                f"vLLM refuses to start; raise it to {longest}, or enable chunked prefill",
            )


def flashcomm_needs_tensor_parallel(profile: Profile) -> Iterator[Hit]:
    """FlashComm1 is for tensor-parallel MoE only (vllm-ascend v0.13.0 envs.py: "when tensor
    parallel is enabled"; its tutorial: "only supported … where tensor-parallel-size > 1")."""
    for name, inst in profile.instances.items():
        where = "env" if "VLLM_ASCEND_ENABLE_FLASHCOMM1" in inst.env else None
        value = inst.env.get("VLLM_ASCEND_ENABLE_FLASHCOMM1", profile.defaults.env.get("VLLM_ASCEND_ENABLE_FLASHCOMM1"))
        if value not in ("1", "true", "True"):
            continue
        tensor_parallel = positive_int(inst.arg("tensor_parallel_size")) or 1
        if tensor_parallel <= 1:
            path: Loc = ("instances", name, "env", "VLLM_ASCEND_ENABLE_FLASHCOMM1") if where else ("defaults", "env")
            yield (
                "warning",
                path,
                f"VLLM_ASCEND_ENABLE_FLASHCOMM1 is set for instances.{name}, which has no tensor parallelism "
                "(tensor_parallel_size 1): FlashComm1 needs tensor_parallel_size > 1; drop it there",
            )


def hccl_connect_timeout(profile: Profile) -> Iterator[Hit]:
    """Ranks of a multi-node instance that start far apart outlast HCCL's 120 s link set-up
    (EI0006 "Getting socket times out"): CANN's HCCL guide, vllm-ascend #5461 and #9447."""
    for name, inst in profile.instances.items():
        if len(inst.nodes) < 2:
            continue
        if not any("HCCL_CONNECT_TIMEOUT" in env for env in instance_envs(profile, inst)):
            yield (
                "info",
                ("instances", name, "nodes"),
                f"instances.{name} spans {len(inst.nodes)} nodes: consider HCCL_CONNECT_TIMEOUT (e.g. 600) in its "
                "env; HCCL gives up on link set-up after 120 s (EI0006) when its ranks start far apart",
            )


ENGINE_READY_ENV, ENGINE_READY_DEFAULT_S = "VLLM_ENGINE_READY_TIMEOUT_S", 600  # vllm/envs.py


def engine_ready_timeout(profile: Profile) -> Iterator[Hit]:
    """vLLM's API server waits VLLM_ENGINE_READY_TIMEOUT_S (600 s unless set) for its engines to
    report in, then exits "Timed out waiting for engine…" (vllm-ascend#3977, vllm#35616): shorter
    than cpconsole's stage timeout, a slow multi-node load ends there and the stage's wait is moot.
    vllm-ascend's own multi-node CI sets 1800. (On one node vLLM's wait may not bound the load at
    all: vllm#48031.)"""
    for name, inst in profile.instances.items():
        if len(inst.nodes) < 2:
            continue
        stage = getattr(profile.timeouts, inst.role)
        given = {k: v for env in instance_envs(profile, inst) for k, v in env.items()}.get(ENGINE_READY_ENV)
        ready = positive_int(given) if given is not None else ENGINE_READY_DEFAULT_S
        if ready is None or ready >= stage:
            continue
        said = f"{ENGINE_READY_ENV}={given}" if given is not None else f"{ENGINE_READY_ENV} unset"
        yield (
            "warning",
            ("instances", name, "env", ENGINE_READY_ENV)
            if ENGINE_READY_ENV in inst.env
            else ("instances", name, "nodes"),
            f"vLLM waits {ready} s for its engines ({said}), cpconsole {stage:g} s "
            f'(timeouts.{inst.role}): a longer load ends with "Timed out waiting for engine…"; set '
            f'{ENGINE_READY_ENV}: "{stage:g}" in its env',
        )


def bench_concurrency(profile: Profile) -> Iterator[Hit]:
    """The guide: "--max-num-seqs indicates the maximum number of requests that each DP group is
    allowed to process … the excess requests will remain in a waiting state … the time spent in the
    waiting state is also counted in metrics such as TTFT and TPOT … it is generally recommended
    that --max-num-seqs * --data-parallel-size >= the actual total concurrency." A bench without a
    request rate sends all its prompts at once."""
    bench = profile.bench
    if bench is None or bench.request_rate is not None:
        return
    for name, inst in profile.instances.items():
        seqs = positive_int(inst.arg("max_num_seqs"))
        engines = inst.data_parallel.size if inst.data_parallel else 1
        if seqs is not None and bench.num_prompts > seqs * engines:
            yield (
                "warning",
                ("bench", "num_prompts"),
                f"bench sends {bench.num_prompts} requests at once; instances.{name} runs max_num_seqs {seqs} × "
                f"DP {engines} = {seqs * engines} at a time: the rest wait, and the wait counts in TTFT and TPOT "
                "(the guide: max_num_seqs × DP ≥ the concurrency); set bench.request_rate, or fewer prompts",
            )
