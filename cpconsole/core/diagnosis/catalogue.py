"""The known ways vLLM-Ascend deployments fail, one row each: how the log says it, what it means and
what to do. Written from real lines (cpconsole/sim/real_failures.yaml, sources in docs/failures.md);
rows are in priority order — a root cause (NPU out of memory on one rank) before what it causes on
the others (peers lost, the engine dead)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Severity = Literal["critical", "warning"]
When = Literal["any", "start-up", "serving"]


@dataclass(frozen=True)
class Cause:
    kind: str
    needles: tuple[str, ...]  # a line can match only if it holds one of these (a cheap test first)
    pattern: re.Pattern[str]
    summary: str
    hint: str  # may name {node}, {device}, {peer}: filled from the place the lines give
    severity: Severity = "critical"
    when: When = "any"  # start-up: ordinary while serving (a request's own ValueError); serving: normal at start-up
    live: bool = True  # an alert while serving; False: it only explains a process that ended

    def matches(self, line: str) -> bool:
        return any(needle in line for needle in self.needles) and self.pattern.search(line) is not None


def _cause(
    kind: str,
    needles: tuple[str, ...],
    pattern: str,
    summary: str,
    hint: str,
    *,
    severity: Severity = "critical",
    when: When = "any",
    live: bool = True,
) -> Cause:
    return Cause(kind, needles, re.compile(pattern), summary, hint, severity, when, live)


CAUSES: tuple[Cause, ...] = (
    _cause(
        "npu_oom",
        ("NPU out of memory",),
        r"NPU out of memory",
        "NPU out of memory",
        "lower gpu_memory_utilization or max_num_batched_tokens, and check that nothing else holds HBM on {node} "
        "(`npu-smi info`, chip {device})",
    ),
    _cause(
        "kv_cache_too_small",
        ("stored in KV cache", "No available memory for the cache blocks", "estimated maximum model length"),
        r"larger than the maximum number of tokens that can be stored in KV cache|"
        r"No available memory for the cache blocks|estimated maximum model length is \d+",
        "KV cache too small for max_model_len",
        "raise gpu_memory_utilization or lower max_model_len (the log names the largest length that fits)",
        when="start-up",
    ),
    _cause(
        "model_missing",
        ("Invalid repository ID", "Repo id must", "such file", "does not exist", "is not a valid model"),
        r"Invalid repository ID or local directory|HFValidationError: Repo id must|"
        r"(?i:(no such file or directory|does not exist|is not a valid model).*(model|config\.json|weight))",
        "the model path is missing",
        "model.path must exist on {node} (or on the shared directory) and hold config.json: "
        "vLLM takes a path it cannot read for a Hugging Face repository name",
        when="start-up",
    ),
    _cause(
        "library_missing",
        ("cannot open shared object file",),
        r"ImportError: \S+\.so[.\d]*: cannot open shared object file",
        "a library the server loads is not on its LD_LIBRARY_PATH",
        "the shell that starts it lacks CANN's environment (toolkit, NNAL, driver libraries): give the process "
        "setup lines that source the set_env.sh files — in a vllm-ascend container the default reads the image's "
        "~/.bashrc; `cpconsole preflight` imports torch_npu the same way",
        when="start-up",
    ),
    _cause(
        "bad_arguments",
        ("vllm serve: error:", "divisible by", "validation error for", "Value error,"),
        r"vllm serve: error:|must be divisible by|is not divisible by|validation error for \w+|Value error, ",
        "vLLM refused its arguments",
        "fix the value named in the error (`cpconsole validate` catches the known ones)",
        when="start-up",
    ),
    _cause(
        "hccl_port_in_use",
        ("[Listen]",),
        r"\[Listen\].*port\[\d+\] fail",
        "HCCL could not listen on its port",
        "another process on {node} holds HCCL's port ({peer}): a rank of an earlier run still alive? "
        "(`ss -ltnp`, `cpconsole status --orphans`)",
    ),
    _cause(
        "master_port_in_use",
        ("server socket has failed to listen",),
        r"server socket has failed to listen",
        "the master port (torch.distributed) is already in use",
        "another process on {node} holds master_port: a stale run (`ss -ltnp`), or move master_port",
        when="start-up",
    ),
    _cause(
        "zmq_port",
        ("Address already in use (addr=",),
        r"Address already in use \(addr='tcp://",
        "a kv-transfer port is already in use",
        "kv ports inside Mooncake's random range (20000 + chips·1000) collide now and then: move kv_port above "
        "it; outside it, a process of an earlier run, two ranks at once, or vLLM's get_open_port race "
        "(the hint names the one its ports point to)",
        when="start-up",
    ),
    _cause(
        "port_in_use",
        ("Errno 98", "EADDRINUSE"),
        r"\[Errno 98\]|EADDRINUSE",
        "a port is already in use",
        "the traceback says which port: another server on the HTTP port, or one vLLM picked for itself "
        "(get_open_port raced another process): `ss -ltnp` on {node}, then restart",
        when="start-up",
    ),
    _cause(
        "hccl_device_ip",
        ("'device_ip' is not set",),
        r"'device_ip' is not set correctly",
        "HCCL has no device IP for a multi-server link",
        "the chips' NPU IPs must be set (`hccn_tool -i {device} -ip -g` on {node}); P and D on one machine "
        "need HCCL_INTRA_ROCE_ENABLE=1",
    ),
    _cause(
        "hccl_transport",
        ("EI0009", "Create Dest error", "Transport init error"),
        r"EI0009|Create Dest error|Transport init error",
        "HCCL could not build a link to a peer rank",
        "the other end ({peer}) failed or is unreachable: read that rank's log first, then "
        "`hccn_tool -i {device} -link -g` on {node}",
    ),
    _cause(
        "hccl_init_failed",
        ("hcclCommInitRootInfo", "HcclCommInitRootInfo", "call hccl api failed"),
        r"(?i:hcclCommInitRootInfo)|DIST call hccl api failed",
        "HCCL communicator set-up failed",
        "a rank could not join its HCCL group: check every rank started (same world size on all nodes), "
        "HCCL_IF_IP / HCCL_SOCKET_IFNAME on {node}, and `hccn_tool -i {device} -link -g`",
    ),
    _cause(
        "hccl_rank_stuck",
        ("did not send the data in time",),
        r"Remote Rank did not send the data in time",
        "a peer rank stopped sending (HCCL EI0006 while serving)",
        "another rank is stuck or died mid-collective: find the one with its own error (the board's other "
        "processes), then check its chip with `npu-smi info` on its node",
    ),
    _cause(
        "hccl_link_timeout",
        ("EI0006", "Getting socket times out", "wait socket establish timeout", "| time out |"),
        r"EI0006|Getting socket times out|wait socket establish timeout|\|\s*time out\s*\|",
        "HCCL link set-up timed out (EI0006)",
        "ranks started too far apart or an NPU link is down: start all ranks together, raise HCCL_CONNECT_TIMEOUT, "
        "check `hccn_tool -i {device} -link -g` and `hccn_tool -i {device} -tls -g` on {node} (cpconsole preflight)",
    ),
    _cause(
        "kv_connect_timeout",
        ("Connect timeout to:", "Failed to connect to target", "Failed to connect to segment"),
        r"Connect timeout to: |Failed to connect to (target|segment)",
        "the KV transfer could not connect to its peer",
        "{node} could not reach {peer} over the NPU network: `hccn_tool -i {device} -ping -g address <peer NPU IP>` "
        "(`cpconsole preflight` pings the chips that talk), and raise ASCEND_CONNECT_TIMEOUT",
        severity="warning",
    ),
    _cause(
        "kv_link_failed",
        ("LLM_LINK_FAILED",),
        r"LLM_LINK_FAILED",
        "llm_datadist could not link prefill and decode",
        "the KV link between the instances failed: check the device IPs in the rank table and "
        "`hccn_tool -i {device} -link -g` on both ends",
    ),
    _cause(
        "kv_wait_timeout",
        ("Timeout waiting for P side ready",),
        r"Timeout waiting for P side ready",
        "the decode gave up waiting for the prefill's KV",
        "the prefill is slow (a long prompt) or its KV sender died: read the prefill's log, raise "
        "ASCEND_TRANSFER_TIMEOUT for long prompts",
        severity="warning",
    ),
    _cause(
        "kv_transfer_failed",
        ("transfer failed", "Failed to transfer KV cache", "Transfer slice failed"),
        r"(?i:mooncake transfer failed)|Failed to transfer KV cache|Transfer slice failed",
        "a KV transfer between prefill and decode failed",
        "requests lose their KV and fail or re-prefill: check the prefill↔decode NPU links "
        "(`hccn_tool -i {device} -link -g` on {node}) and raise ASCEND_TRANSFER_TIMEOUT for long prompts",
        severity="warning",
    ),
    _cause(
        "collective_timeout",
        ("Watchdog caught collective operation timeout", "watchdog thread terminated"),
        r"Watchdog caught collective operation timeout|watchdog thread terminated",
        "a collective operation timed out (HCCL watchdog)",
        "one rank stopped taking part: find the rank with its own error or a sick chip (`npu-smi info` on each "
        "node); the process takes itself down after this",
    ),
    _cause(
        "shm_broadcast_stall",
        ("No available shared memory broadcast block",),
        r"No available shared memory broadcast block found",
        "workers stopped answering the engine (shm_broadcast)",
        "a worker hangs or is busy for over a minute: a stuck collective on another rank, a sick chip "
        "(`npu-smi info` on {node}); harmless only during start-up compilation",
        severity="warning",
        when="serving",
    ),
    _cause(
        "acl_error",
        (
            "acl api failed",
            "ACL stream synchronize failed",
            "error code:",
            "The error from device",
            "OPS function error",
        ),
        r"acl api failed|ACL stream synchronize failed|error code:\s?50\d{4}|The error from device\(chipId:\d+|"
        r"OPS function error|AclrtSynchronizeStreamWithTimeout",
        "an NPU operation failed (ACL error)",
        "the chip reported an error (507035/507034: a kernel fault on the device): check it with "
        "`npu-smi info -t health -i {device}` on {node} and its plog; restart the instance",
    ),
    _cause(
        "rendezvous_timeout",
        ("DistStoreError", "client socket has timed out", "clients joined"),
        r"DistStoreError|client socket has timed out|clients joined",
        "ranks did not all join in time",
        "a node-rank never started or cannot reach the master ({peer}): start every node-rank, check "
        "master_addr/master_port and the firewall",
        when="start-up",
    ),
    _cause(
        "peer_lost",
        (
            "closed by peer",
            "reset by peer",
            "connectFullMesh",
            "DistNetworkError",
            "is gone",
            "TCPStore",
            "Timed out waiting",
        ),
        r"Connection closed by peer|Connection reset by peer|connectFullMesh failed|master .* is gone|"
        r"disconnected from the TCPStore|DistNetworkError|gloo.*Timed out waiting \d+ms",
        "lost its peer ranks",
        "another rank of this instance died or never started ({peer}): check the other nodes' logs; "
        "GLOO_SOCKET_IFNAME must name a NIC that reaches them",
    ),
    _cause(
        "engines_timeout",
        ("Timed out waiting for engine", "Timed out waiting for new engine"),
        r"Timed out waiting for (new )?engine",
        "the API server's engines never reported in",
        "an engine core (or a headless node-rank) did not start within VLLM_ENGINE_READY_TIMEOUT_S (600 s unless "
        "set): read the engine lines above and the other nodes; a load that is only slow needs it raised in env",
        when="start-up",
    ),
    _cause(
        "no_progress",
        ("Avg generation throughput: 0.0 tokens/s",),
        r"Avg prompt throughput: 0\.0 tokens/s, Avg generation throughput: 0\.0 tokens/s, Running: [1-9]\d* reqs",
        "requests run but no token moves",
        "the engine holds requests and makes no progress: a hung collective or KV transfer — look for HCCL or "
        "transfer errors on every rank, `npu-smi info` on {node}",
        severity="warning",
        when="serving",
        live=False,  # vLLM prints it all through one long unchunked prefill too: the stall detector,
        # which sees the chips compute, judges a hang while serving; this names why a process ended
    ),
    _cause(
        "engine_dead",
        ("EngineCore encountered", "EngineDeadError"),
        r"EngineCore encountered a fatal error|EngineDeadError",
        "the engine died",
        "see the traceback above; the API server cannot serve without its engine",
    ),
    _cause(
        "engine_start",
        ("EngineCore failed to start", "Engine core initialization failed"),
        r"EngineCore failed to start|Engine core initialization failed",
        "the engine failed to start",
        "see the root cause above in the log",
        when="start-up",
    ),
    _cause(
        "config_error",
        ("ValueError", "AssertionError"),
        r"\b(ValueError|AssertionError)\b",
        "vLLM refused its configuration",
        "the error names the setting; fix it in the profile",
        when="start-up",
    ),
)

NEEDLES: tuple[str, ...] = tuple(sorted({needle for cause in CAUSES for needle in cause.needles}))


def cause_of(line: str) -> Cause | None:
    """The first cause (in priority order) this one line shows."""
    if not any(needle in line for needle in NEEDLES):
        return None
    for cause in CAUSES:
        if cause.matches(line):
            return cause
    return None
