"""`python -m cpconsole.sim vllm serve MODEL [flags]`: start-up, logs, rendezvous and serving
the way vLLM 0.13 on vllm-ascend does it, so a console cannot tell it from the outside.

Environment (all optional):
  CPCONSOLE_SIM_STARTUP_S          start-up duration in seconds (default 2)
  CPCONSOLE_SIM_FAULT              KIND@start-up | KIND@SECONDS, then #RANK: a real failure replayed
                                   (faults.py; KIND from real_failures.yaml)
  CPCONSOLE_SIM_CRASH_AFTER        N: the engine dies after N requests
  CPCONSOLE_SIM_HANG               1: accept connections, never answer
  CPCONSOLE_SIM_HEALTH_503         1: /health answers 503 while the process lives
  CPCONSOLE_SIM_METRICS_DELAY_S    seconds /metrics takes
  CPCONSOLE_SIM_METRICS_GARBAGE    1: /metrics answers garbage
  CPCONSOLE_SIM_BACKGROUND_RPS     synthetic requests per second, so a demo looks alive
  CPCONSOLE_SIM_RENDEZVOUS_TIMEOUT_S  how long headless ranks wait for the master (default 600)
  CPCONSOLE_SIM_PREFILL_TOKS, _PREFILL_BASE_S, _ATTENTION_S, _DECODE_STEPS, _KV_TRANSFER_TOKS, _MTP_ACCEPT  timing
  VLLM_LOG_STATS_INTERVAL          seconds between stats lines (default 10), as in vLLM
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable

import uvicorn
from uvicorn.logging import AccessFormatter

from . import libs, nodestate
from .args import VERSION, ServeArgs, ServeArgumentError, build_parser, parse
from .dist import Rendezvous
from .engine import HBM_MB, Engine, KvBudget
from .faults import Fault, write_plog
from .metrics import VllmMetrics
from .server import Faults, SimServer
from .vlog import VllmLog

SHARDS = 163  # DeepSeek-V3.1 w8a8 safetensors shards
ROUTES = [
    "/health",
    "/ping",
    "/version",
    "/load",
    "/v1/models",
    "/metrics",
    "/tokenize",
    "/v1/completions",
    "/v1/chat/completions",
]


class _PrefixedHandler(logging.Handler):
    """uvicorn's own lines, behind vLLM 0.13's `(APIServer pid=N) ` prefix."""

    def __init__(self, log: VllmLog, formatter: logging.Formatter) -> None:
        super().__init__()
        self.log = log
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if "Uvicorn running on" not in message:  # vLLM hands uvicorn a bound socket: no such line
            self.log.write(self.log.prefix("APIServer") + message + "\n")


def _configure_uvicorn_logging(log: VllmLog, access: bool) -> None:
    error = logging.getLogger("uvicorn.error")
    error.handlers = [
        _PrefixedHandler(log, uvicorn.logging.DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False))
    ]
    error.propagate = False
    error.setLevel(logging.INFO)
    access_logger = logging.getLogger("uvicorn.access")
    fmt = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
    access_logger.handlers = [_PrefixedHandler(log, AccessFormatter(fmt, use_colors=False))] if access else []
    access_logger.propagate = False
    access_logger.setLevel(logging.INFO)
    access_logger.disabled = not access


def _fail(log: VllmLog, lines: list[str]) -> int:
    log.engine("core.py:866", "EngineCore failed to start.", level="ERROR")
    log.write("Traceback (most recent call last):\n")
    log.write('  File "/vllm-workspace/vllm/vllm/v1/engine/core.py", line 857, in run_engine_core\n')
    for line in lines:
        log.write(line + "\n")
    log.api(
        "launcher.py:101",
        "RuntimeError: Engine core initialization failed. See root cause above. "
        "Failed core proc(s): {'EngineCore_DP0': 1}",
        level="ERROR",
    )
    return 1


async def _replay(fault: Fault, log: VllmLog, on_fatal: Callable[[str], None]) -> None:
    """A fault while serving: its real line, then the engine dies of it or it recurs."""
    await asyncio.sleep(fault.after_s)
    while True:
        log.write(fault.line + "\n")
        write_plog(fault.line)
        if not fault.recurring:
            on_fatal(f"{fault.kind} (CPCONSOLE_SIM_FAULT)")
            return
        await asyncio.sleep(fault.every_s)


def _node_address(args: ServeArgs) -> str:
    if os.environ.get("HCCL_IF_IP"):
        return os.environ["HCCL_IF_IP"]
    return args.host if args.host not in (None, "0.0.0.0", "::") else "127.0.0.1"


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _local_chips(args: ServeArgs) -> list[int]:
    count = max(1, args.world_size * args.dp_local // max(1, args.nnodes))
    visible = os.environ.get("ASCEND_RT_VISIBLE_DEVICES")
    if visible:
        return [int(c) for c in visible.split(",") if c.strip().isdigit()][:count]
    return list(range(count))


async def _load(log: VllmLog, args: ServeArgs, seconds: float, worker: str) -> None:
    log.worker(worker, "model_runner_v1.py:2378", f"Starting to load model {args.model_tag}...")
    if args.num_speculative_tokens:
        log.worker(worker, "model_runner_v1.py:2385", "Loading drafter model...")
    steps = 10
    for step in range(steps + 1):
        if args.node_rank == 0 and not args.headless:
            done = SHARDS * step // steps
            elapsed = seconds * step / steps
            log.write(
                f"Loading safetensors checkpoint shards: {100 * step // steps:3d}% Completed | {done}/{SHARDS} "
                f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}<00:00, {done / max(elapsed, 0.01):.2f}it/s]\n"
            )
        if step < steps:
            await asyncio.sleep(seconds / steps)


async def _serve(args: ServeArgs, log: VllmLog) -> int:
    faults = Faults.from_env()
    startup = float(os.environ.get("CPCONSOLE_SIM_STARTUP_S", "2") or 0)
    address = _node_address(args)
    try:
        fault = Fault.from_env(address, int(os.environ.get("CPCONSOLE_SIM_CHIPS", "16") or 16))
    except ValueError as exc:
        log.write(f"{exc}\n")
        return 2
    log.api("api_server.py:1351", f"vLLM API server version {VERSION}")
    log.api("utils.py:253", f"non-default args: {args.non_default()}")

    http: socket.socket | None = None
    if args.serves_http:
        host = args.host or "0.0.0.0"
        try:
            http = _bind(host, args.port)  # bound early, listening only when ready, as vLLM does
        except OSError as exc:
            log.write(f"OSError: [Errno {exc.errno}] {exc.strerror}: ('{host}', {args.port})\n")
            return 1

    rendezvous = Rendezvous(log)
    dp_nodes = max(1, args.data_parallel_size // max(1, args.dp_local))
    timeout = float(os.environ.get("CPCONSOLE_SIM_RENDEZVOUS_TIMEOUT_S", "600"))
    try:
        if args.nnodes > 1:
            if args.headless:
                log.api(
                    "serve.py:121",
                    f"Launching vLLM (v{VERSION}) headless multiproc executor, with head node "
                    f"address {args.master_addr} for torch.distributed process group.",
                )
                await rendezvous.join(args.master_addr, args.master_port, args.node_rank, timeout)
            else:
                await rendezvous.host(args.master_addr, args.master_port, args.nnodes - 1)
        elif dp_nodes > 1 and args.data_parallel_rpc_port:
            dp_address = args.data_parallel_address or address
            if args.data_parallel_start_rank == 0:
                await rendezvous.host(dp_address, args.data_parallel_rpc_port, dp_nodes - 1)
            else:
                if args.headless:
                    log.api(
                        "serve.py:136",
                        f"Launching {args.dp_local} data parallel engine(s) in headless mode, "
                        f"with head node address {dp_address}.",
                    )
                await rendezvous.join(dp_address, args.data_parallel_rpc_port, args.data_parallel_start_rank, timeout)
    except TimeoutError as exc:
        log.write(f"torch.distributed.DistNetworkError: {exc}\n")
        return 1
    except OSError as exc:
        log.write(
            f"RuntimeError: The server socket has failed to listen on any local network address. "
            f"port: {args.master_port}, useIpv6: 0, code: -{exc.errno}, name: {exc.strerror}\n"
        )
        return 1

    worker = "Worker_TP0" if args.node_rank == 0 else f"Worker_TP{args.node_rank * args.tensor_parallel_size}"
    log.engine(
        "core.py:93",
        f"Initializing a V1 LLM engine (v{VERSION}) with config: model='{args.model_tag}', "
        f"tensor_parallel_size={args.tensor_parallel_size}, prefill_context_parallel_size="
        f"{args.prefill_context_parallel_size}, decode_context_parallel_size={args.decode_context_parallel_size}, "
        f"data_parallel_size={args.data_parallel_size}, seed={args.seed}",
    )
    started = time.monotonic()
    await _load(log, args, startup * 0.6, worker)
    if fault is not None and fault.at_startup:
        write_plog(fault.line)
        return _fail(log, [fault.line])
    budget = KvBudget.of(args)
    log.worker(worker, "model_runner_v1.py:2396", f"Loading model weights took {budget.weights_gb:.4f} GB")
    if args.serves_http or args.node_rank == 0:
        total = HBM_MB * 2**20
        log.worker(
            worker,
            "worker.py:308",
            f"Available memory: {int(max(0.0, budget.available_gb) * 2**30)}, total memory: {total}",
        )
    if budget.tokens <= 0:
        return _fail(
            log,
            [
                "ValueError: No available memory for the cache blocks. Try increasing "
                "`gpu_memory_utilization` when initializing the engine."
            ],
        )
    if args.max_model_len and args.max_model_len > budget.tokens:
        return _fail(
            log,
            [
                f"ValueError: To serve at least one request with the models's max seq len "
                f"({args.max_model_len}), ({args.max_model_len * 70_000 / 2**30:.2f} GiB KV cache is needed, "
                f"which is larger than the available KV cache memory ({budget.available_gb:.2f} GiB). Based "
                f"on the available memory, the estimated maximum model length is {budget.tokens}. Try "
                "increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the "
                "engine."
            ],
        )
    cp = args.prefill_context_parallel_size * args.decode_context_parallel_size
    if cp > 1:
        log.engine(
            "kv_cache_utils.py:1284",
            f"Multiplying the GPU KV cache size by the cp_world_size {cp} "
            f"(pcp_world_size {args.prefill_context_parallel_size} * dcp_world_size "
            f"{args.decode_context_parallel_size}).",
        )
    log.engine("kv_cache_utils.py:1290", f"GPU KV cache size: {budget.tokens:,} tokens")
    if args.max_model_len:
        log.engine(
            "kv_cache_utils.py:1300",
            f"Maximum concurrency for {args.max_model_len:,} tokens per request: "
            f"{budget.tokens / args.max_model_len:.2f}x",
        )

    kv_listeners = _bind_kv_ports(args, address, log)
    if kv_listeners is None:
        return 1
    await asyncio.sleep(startup * 0.4)
    log.engine(
        "core.py:260",
        f"init engine (profile, create kv cache, warmup model) took {time.monotonic() - started:.2f} seconds",
    )

    metrics = VllmMetrics(args.model_name, str(args.data_parallel_start_rank), spec_tokens=args.num_speculative_tokens)
    engine = Engine(args, metrics, log)
    fatal = asyncio.Event()
    reason: list[str] = []

    def on_fatal(message: str) -> None:
        reason.append(message)
        fatal.set()

    tasks = [asyncio.create_task(_publish_state(args, engine, budget))]
    interval = float(os.environ.get("VLLM_LOG_STATS_INTERVAL", "10") or 10)
    if not args.disable_log_stats and args.serves_http:
        tasks.append(asyncio.create_task(engine.log_stats(interval)))
    if fault is not None:
        tasks.append(asyncio.create_task(_replay(fault, log, on_fatal)))
    rate = float(os.environ.get("CPCONSOLE_SIM_BACKGROUND_RPS", "0") or 0)
    if rate > 0 and args.serves_http:
        tasks.append(asyncio.create_task(engine.background_traffic(rate)))

    server_task: asyncio.Task[None] | None = None
    server: uvicorn.Server | None = None
    if http is not None:
        sim = SimServer(args, engine, faults, on_fatal, address)
        _configure_uvicorn_logging(log, access=not args.disable_uvicorn_access_log)
        config = uvicorn.Config(
            sim.app, log_config=None, access_log=not args.disable_uvicorn_access_log, lifespan="on", log_level="info"
        )
        server = uvicorn.Server(config)
        log.api("api_server.py:1426", f"Starting vLLM API server 0 on http://{args.host or '0.0.0.0'}:{args.port}")
        log.api("launcher.py:38", "Available routes are:")
        for route in ROUTES:
            log.api(
                "launcher.py:46",
                f"Route: {route}, Methods: {'POST' if route in ('/tokenize', '/v1/completions', '/v1/chat/completions') else 'GET'}",
            )
        server_task = asyncio.create_task(server.serve(sockets=[http]))

    waiters = [asyncio.create_task(fatal.wait()), asyncio.create_task(rendezvous.lost.wait())]
    if server_task is not None:
        waiters.append(server_task)  # type: ignore[arg-type]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if rendezvous.lost.is_set() or fatal.is_set():
        why = rendezvous.reason or (reason[0] if reason else "unknown")
        engine.dead = True
        log.engine("core.py:868", "EngineCore encountered a fatal error.", level="ERROR")
        log.write(f"RuntimeError: {why}\n")
        code = 1
        if server is not None and fatal.is_set():
            # what a real API server says when its engine dies, then it shuts uvicorn down and
            # exits 0 (seen with vLLM 0.32: kill -9 of EngineCore → exit code 0)
            log.api("async_llm.py:906", "AsyncLLM output_handler failed.", level="ERROR")
            log.api(
                "async_llm.py:906",
                "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an "
                "issue. See stack trace (above) for the root cause.",
                level="ERROR",
            )
            code = 0
    if server is not None and server_task is not None and not server_task.done():
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server_task, 5)
    for task in tasks + waiters:
        task.cancel()
    for sock in kv_listeners:
        sock.close()
    nodestate.withdraw(os.getpid())
    return code


def _bind_kv_ports(args: ServeArgs, address: str, log: VllmLog) -> list[socket.socket] | None:
    """Mooncake's per-worker handshake listeners; a taken port fails like ZMQ does."""
    kv = args.kv
    if not str(kv.get("kv_connector", "")).startswith("Mooncake") or not kv.get("kv_port"):
        return []
    base = int(kv["kv_port"])
    tp, pcp = args.tensor_parallel_size, args.prefill_context_parallel_size
    per_node = max(1, args.world_size // max(1, args.nnodes))
    listeners = []
    for rank in range(args.node_rank * per_node, (args.node_rank + 1) * per_node):
        port = (
            base
            + args.data_parallel_start_rank * tp * pcp * args.pipeline_parallel_size
            + (rank // tp % pcp) * tp
            + rank % tp
        )
        try:
            sock = _bind(address, port)
            sock.listen()
            listeners.append(sock)
        except OSError:
            for taken in listeners:
                taken.close()
            log.write(f"zmq.error.ZMQError: Address already in use (addr='tcp://{address}:{port}')\n")
            _fail(log, [f"zmq.error.ZMQError: Address already in use (addr='tcp://{address}:{port}')"])
            return None
    return listeners


async def _publish_state(args: ServeArgs, engine: Engine, budget: KvBudget) -> None:
    chips = _local_chips(args)
    hbm = int(HBM_MB * args.gpu_memory_utilization * 0.97)
    while True:
        nodestate.publish(
            {
                "pid": os.getpid(),
                "name": "VLLM",
                "chips": chips,
                "hbm_mb": hbm,
                "busy": engine.busy,
                "updated": time.time(),
            }
        )
        await asyncio.sleep(1.0)


def main(argv: list[str]) -> int:
    log = VllmLog()
    if not argv or argv[0] != "serve":
        print("usage: vllm serve [model_tag] [options]", file=sys.stderr)
        return 2
    library = libs.missing()  # vLLM imports its platform plugin (and torch_npu) before anything else
    if library is not None:
        print("\n".join(libs.traceback_lines(library)), file=sys.stderr)
        return 1
    if any(word == "--help" or word.startswith("--help=") for word in argv[1:]):
        print(build_parser().format_help())  # what this simulator takes, in argparse's layout as vLLM's
        return 0
    try:
        args = parse(argv[1:])
    except ServeArgumentError as exc:
        if str(exc).startswith("vllm serve: error:"):
            build_parser().print_usage(sys.stderr)
            print(exc, file=sys.stderr)
            return 2
        print("Traceback (most recent call last):", file=sys.stderr)
        print(
            '  File "/vllm-workspace/vllm/vllm/engine/arg_utils.py", line 1354, in create_engine_config',
            file=sys.stderr,
        )
        print(exc, file=sys.stderr)
        return 1
    try:
        return asyncio.run(_serve(args, log))
    except KeyboardInterrupt:
        return 130
