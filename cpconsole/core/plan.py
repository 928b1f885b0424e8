"""Profile → LaunchPlan: per process, where it runs and exactly what it runs.

The plan is the single source of truth for what is started; render.py turns it into the shell
text the remote layer writes to the node and `cpconsole render` prints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from .names import unknown
from .profile import LoadedProfile
from .profile.loader import Loc
from .profile.schema import (
    Alerts,
    ApiKey,
    HttpRoute,
    Instance,
    Notify,
    Profile,
    SshSettings,
    Timeouts,
    Tools,
    TransportKind,
    flag_name,
)
from .profile.topology import (
    VISIBLE_ENV,
    Placement,
    api_servers,
    declared_env,
    declared_setup,
    effective_container,
    node_address,
    parallel_of,
    parse_visible,
    placements,
    port_claims,
)
from .router import router_argv

ProcessRole = Literal["prefill", "decode", "colocated", "proxy"]
KV_ROLES = {"prefill": "kv_producer", "decode": "kv_consumer", "colocated": "kv_both"}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PortUse(Frozen):
    kind: str
    start: int
    end: int


# What the guide's `docker run` gives a container besides the chips: the driver's manager devices,
# and the driver, its tools and its install record mounted from the node at the same paths.
DRIVER_DEVICES = ("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")
DRIVER_MOUNTS = (
    "/usr/local/dcmi",
    "/usr/local/Ascend/driver/tools/hccn_tool",
    "/usr/local/bin/npu-smi",
    "/usr/local/Ascend/driver/lib64/",
    "/usr/local/Ascend/driver/version.info",
    "/etc/ascend_install.info",
)


class ContainerPlan(Frozen):
    """A container processes of one node run in. With an image, cpconsole creates it: host
    network, every chip of the node (the guide maps 0-7 of 16), the driver's devices and mounts,
    the model's directory and the profile's mounts; without one, it was made by hand."""

    node: str
    name: str
    image: str | None
    shm_size: str
    devices: tuple[str, ...]
    mounts: tuple[str, ...]
    cli: tuple[str, ...]

    def run_argv(self) -> list[str]:
        """`docker run` that creates it, detached (processes come in with `docker exec`)."""
        if self.image is None:
            raise ValueError(f"container {self.name} has no image: it is made by hand")
        return [
            *self.cli,
            "run",
            "--detach",
            "--name",
            self.name,
            "--net=host",
            f"--shm-size={self.shm_size}",
            *(word for device in self.devices for word in ("--device", device)),
            *(word for mount in self.mounts for word in ("--volume", f"{mount}:{mount}")),
            self.image,
            "sleep",
            "infinity",
        ]


class NodePlan(Frozen):
    name: str
    host: str
    address: str
    transport: TransportKind
    ssh: SshSettings
    chips: int
    run_dir: str
    tools: Tools = Tools()
    env: tuple[tuple[str, str], ...] = ()
    http: HttpRoute = "auto"  # how cpconsole's HTTP reaches its servers (schema.HttpRoute)

    def tool(self, name: str, *args: str) -> list[str]:
        """argv running a node tool (npu_smi, hccn_tool) with the node's own environment."""
        command = list(getattr(self.tools, name))
        prefix = ["env", *(f"{k}={v}" for k, v in self.env)] if self.env else []
        return [*prefix, *command, *args]


class ProcessPlan(Frozen):
    name: str
    role: ProcessRole
    instance: str | None
    node: str
    host: str
    address: str
    node_rank: int
    headless: bool
    http_port: int | None
    env: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]
    container: str | None
    cwd: str | None
    ports: tuple[PortUse, ...]
    container_pidfile: str | None = None  # in the container: where the process records its group
    container_cli: tuple[str, ...] = ("docker",)  # the node's tools.docker
    # the variable that receives the profile's API key at launch (read from KEY_FILE, then deleted)
    key_env: str | None = None
    # cpconsole's proxy: its instance API's admin token comes in this variable, from ADMIN_FILE in its
    # run directory (made by its launch script at the first start; read by a console to drain an instance)
    admin_env: str | None = None
    setup: tuple[str, ...] = ()  # bash lines run before it starts, where it runs (schema.Setup)
    proxy_kind: str | None = None  # the proxy's: cpconsole, vllm-ascend-example or vllm-router
    metrics_port: int | None = None  # where its /metrics is when not on its HTTP port (vllm-router's)

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def visible_devices(self) -> list[int]:
        """ASCEND_RT_VISIBLE_DEVICES as NPU ids: local rank i runs on the i-th (none set: on chip i)."""
        given = self.env_dict.get(VISIBLE_ENV)
        return (parse_visible(given) or []) if given is not None else []

    def int_flag(self, *names: str) -> int | None:
        """The value of the first of these flags in its argv, when given and an integer."""
        argv = self.argv
        for index, arg in enumerate(argv[:-1]):
            if arg in names:
                try:
                    return int(argv[index + 1])
                except ValueError:
                    return None
        return None

    @property
    def capacity(self) -> int | None:
        """Requests its engines run at once: max_num_seqs × the data-parallel engines behind this
        API server; None when max_num_seqs is left to vLLM."""
        seqs = self.int_flag("--max-num-seqs")
        engines = self.int_flag("--data-parallel-size-local", "-dpl") or self.int_flag("--data-parallel-size", "-dp")
        return seqs * (engines or 1) if seqs else None

    @property
    def base_url(self) -> str:
        """http://address:port of its HTTP server (IPv6 bracketed); empty when it serves none."""
        if not self.http_port:
            return ""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.http_port}"

    @property
    def health_path(self) -> str:
        if self.proxy_kind == "vllm-router":
            return "/workers"  # ready when it lists every worker healthy (router.not_ready)
        return "/healthcheck" if self.role == "proxy" else "/health"

    @property
    def metrics_url(self) -> str:
        base = self.base_url
        if self.metrics_port:
            base = base.rsplit(":", 1)[0] + f":{self.metrics_port}"
        return base + "/metrics"

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "node": self.node,
            "host": self.host,
            "address": self.address,
            "container": self.container,
            "container_pidfile": self.container_pidfile,
            "container_cli": list(self.container_cli),
            "cwd": self.cwd,
            "setup": list(self.setup),
            "env": self.env_dict,
            "argv": list(self.argv),
            "ports": [p.model_dump() for p in self.ports],
        }


class LaunchPlan(Frozen):
    profile: str
    digest: str
    run_key: str  # <profile>-<identity>: names its run directories; two profiles share one only if they are one

    model_name: str
    nodes: tuple[NodePlan, ...]
    processes: tuple[ProcessPlan, ...]
    timeouts: Timeouts
    alerts: Alerts
    notify: Notify
    api_key: ApiKey | None = None  # where the key is kept; never the key itself
    containers: tuple[ContainerPlan, ...] = ()
    log_max_mb: int = 1024  # each process's log is kept under this on its node (profile defaults)

    def process(self, name: str) -> ProcessPlan:
        for proc in self.processes:
            if proc.name == name:
                return proc
        raise unknown("process", name, [p.name for p in self.processes], "processes")

    @property
    def front_door(self) -> str:
        """Where clients send requests: the proxy, else the first API server."""
        servers = [p.name for p in self.processes if p.http_port]
        return "proxy" if "proxy" in servers else servers[0]

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise unknown("node", name, [n.name for n in self.nodes])


# ---------------------------------------------------------------- building


def render_flags(args: Mapping[str, JsonValue]) -> list[str]:
    """Flags by name: true → --flag, false → --no-flag, null → omitted, dict/list → compact JSON."""
    argv: list[str] = []
    for key, value in args.items():
        flag = "--" + flag_name(key)
        if value is None:
            continue
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + flag_name(key))
        elif isinstance(value, dict | list):
            argv += [flag, compact_json(value)]
        else:
            argv += [flag, str(value)]
    return argv


def compact_json(value: JsonValue) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _network_env(profile: Profile, node: str) -> dict[str, str]:
    spec = profile.nodes[node]
    nic = spec.nic if "nic" in spec.model_fields_set else profile.defaults.nic
    if nic is None:
        return {}
    return {
        "HCCL_IF_IP": node_address(profile, node),
        "GLOO_SOCKET_IFNAME": nic,
        "TP_SOCKET_IFNAME": nic,
        "HCCL_SOCKET_IFNAME": nic,
    }


def _kv_transfer_config(profile: Profile, inst: Instance, place: Placement) -> dict[str, JsonValue]:
    conn = inst.kv_connector
    assert conn is not None
    config: dict[str, JsonValue] = {"kv_connector": conn.name, "kv_role": KV_ROLES[inst.role]}
    if inst.kv_port is not None:
        config["kv_port"] = str(inst.kv_port)  # the guide passes it as a string; vLLM accepts both
    config["engine_id"] = place.engine_id
    if conn.module_path:
        config["kv_connector_module_path"] = conn.module_path
    config.update(conn.options)
    extra: dict[str, JsonValue] = dict(conn.extra)
    if conn.topology:
        for role in ("prefill", "decode"):
            peer = next((i for i in profile.instances.values() if i.role == role), None)
            if peer is not None:
                par = parallel_of(peer)
                extra[role] = {"dp_size": par.dp, "tp_size": par.tp}
    if extra:
        config["kv_connector_extra_config"] = extra
    return config


def _vllm_argv(profile: Profile, inst: Instance, place: Placement) -> list[str]:
    command = inst.vllm_command or profile.defaults.vllm_command
    master = node_address(profile, inst.nodes[0])
    bind = node_address(profile, place.node) if inst.bind == "node" else inst.bind
    argv = [*command, "serve", profile.model.path, "--host", bind, "--port", str(inst.port)]
    if profile.model.served_name:
        argv += ["--served-model-name", profile.model.served_name]
    dp = inst.data_parallel
    if dp is not None:
        argv += [
            "--data-parallel-size",
            str(dp.size),
            "--data-parallel-size-local",
            str(place.dp_local),
            "--data-parallel-start-rank",
            str(place.dp_start_rank),
            "--data-parallel-address",
            master,
        ]
        if dp.rpc_port is not None:
            argv += ["--data-parallel-rpc-port", str(dp.rpc_port)]
        if dp.hybrid_lb:
            argv.append("--data-parallel-hybrid-lb")
        if place.headless:
            argv.append("--headless")
    argv += render_flags(inst.vllm_args)
    if dp is None and place.nnodes > 1:
        argv += ["--nnodes", str(place.nnodes), "--node-rank", str(place.node_rank)]
        if place.headless:
            argv.append("--headless")
        argv += ["--master-addr", master, "--master-port", str(inst.master_port)]
    if inst.kv_connector is not None:
        argv += ["--kv-transfer-config", compact_json(_kv_transfer_config(profile, inst, place))]
    return argv


def _proxy_argv(profile: Profile) -> list[str]:
    proxy = profile.proxy
    assert proxy is not None
    if proxy.kind_of == "vllm-router":
        return [*router_argv(profile), *render_flags(proxy.args)]
    prefill, decode = api_servers(profile, "prefill"), api_servers(profile, "decode")
    return [
        *proxy.command,
        "--port",
        str(proxy.port),
        "--host",
        proxy.bind or node_address(profile, proxy.node),
        "--prefiller-hosts",
        *(h for h, _ in prefill),
        "--prefiller-ports",
        *(str(p) for _, p in prefill),
        "--decoder-hosts",
        *(h for h, _ in decode),
        "--decoder-ports",
        *(str(p) for _, p in decode),
        *render_flags(proxy.args),
        *_kv_params_flag(profile),
        *(["--require-api-key"] if profile.api_key and proxy.is_cpconsoles else []),  # or anyone gets the key's use
        # cpconsole drains an instance in it before a restart: with the admin token it hands it
        *(["--enable-instance-api", "--admin-token-env", ADMIN_ENV] if proxy.is_cpconsoles else []),
    ]


def _kv_params_flag(profile: Profile) -> list[str]:
    """cpconsole's proxy refuses prefill answers without kv_transfer_params unless the profile's
    prefill connectors do not send them (rules: then its command must be cpconsole's own)."""
    silent = [
        i for i in profile.instances.values() if i.role == "prefill" and i.kv_connector and not i.kv_connector.kv_params
    ]
    return ["--kv-params", "optional"] if silent else []


ADMIN_ENV = "CPCONSOLE_PROXY_ADMIN_TOKEN"

# A process in a container, unless the profile says otherwise, is prepared as the guide's
# `docker exec -it … bash` prepares it: by the image's ~/.bashrc, which docker exec alone never
# reads. The vllm-ascend images put LD_PRELOAD (jemalloc) and LD_LIBRARY_PATH (+/usr/local/lib)
# there (Dockerfile.a3), their CANN base image `source`s the toolkit's and NNAL's set_env.sh there
# (cann-container-image's Dockerfiles). Ubuntu's ~/.bashrc returns at once in a shell without a
# prompt (`[ -z "$PS1" ] && return`): PS1 is set so that it reads on, as an interactive bash would.
IMAGE_SHELL = ("[ ! -r ~/.bashrc ] || { PS1=cpconsole; . ~/.bashrc; }",)


def setup_of(profile: Profile, node: str, owner: Loc, container: str | None) -> tuple[str, ...]:
    declared = declared_setup(profile, node, owner)
    if declared is not None:
        return declared
    return IMAGE_SHELL if container else ()


def pidfile_of(run_key: str, process: str) -> str:
    """Where, inside its container, a process records the group it started (render's keep-group)."""
    return f"/tmp/cpconsole-{run_key}-{process}.pid"


def profile_identity(profile: Profile) -> str:
    """What makes a deployment the same one across edits: its name and its nodes (name and host).
    Instances may be added, removed or changed — a process of one no longer in the profile is
    found as `removed`, one whose flags or env changed as drifted; another name or another set of
    nodes is another deployment (a copy of a profile on other hosts), with run directories of its own."""
    identity = {
        "name": profile.name,
        "nodes": sorted((name, node.host) for name, node in profile.nodes.items()),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]


def build_plan(loaded: LoadedProfile) -> LaunchPlan:
    """The launch plan of a profile that passed its rules."""
    profile = loaded.profile
    claims = port_claims(profile)
    run_key = f"{profile.name}-{profile_identity(profile)}"

    def ports_of(process: str) -> tuple[PortUse, ...]:
        return tuple(PortUse(kind=c.kind, start=c.start, end=c.end) for c in claims if c.process == process)

    def container_name(node: str, owner: tuple[str, ...]) -> str | None:
        found = effective_container(profile, node, owner)
        return found[0].name if found else None

    def tools_of(node: str) -> Tools:
        return profile.nodes[node].tools or profile.defaults.tools

    def pidfile(process: str, container: str | None) -> str | None:
        return pidfile_of(run_key, process) if container else None

    processes: list[ProcessPlan] = []
    for place in placements(profile):
        inst = profile.instances[place.instance]
        env = {**_network_env(profile, place.node), **declared_env(profile, place.node, inst)}
        processes.append(
            ProcessPlan(
                name=place.process,
                role=inst.role,
                instance=place.instance,
                node=place.node,
                host=profile.nodes[place.node].host,
                address=node_address(profile, place.node),
                node_rank=place.node_rank,
                headless=place.headless,
                http_port=inst.port if place.serves_http else None,
                env=tuple(env.items()),
                argv=tuple(_vllm_argv(profile, inst, place)),
                container=(container := container_name(place.node, ("instances", place.instance))),
                cwd=inst.cwd,
                ports=ports_of(place.process),
                container_pidfile=pidfile(place.process, container),
                container_cli=tools_of(place.node).docker,
                key_env="VLLM_API_KEY" if profile.api_key and place.serves_http else None,
                setup=setup_of(profile, place.node, ("instances", place.instance), container),
            )
        )
    if profile.proxy is not None:
        proxy = profile.proxy
        processes.append(
            ProcessPlan(
                name="proxy",
                role="proxy",
                instance=None,
                node=proxy.node,
                host=profile.nodes[proxy.node].host,
                address=node_address(profile, proxy.node),
                node_rank=0,
                headless=False,
                http_port=proxy.port,
                env=tuple(proxy.env.items()),
                argv=tuple(_proxy_argv(profile)),
                container=(container := container_name(proxy.node, ("proxy",))),
                cwd=proxy.cwd,
                ports=ports_of("proxy"),
                container_pidfile=pidfile("proxy", container),
                container_cli=tools_of(proxy.node).docker,
                key_env="OPENAI_API_KEY" if profile.api_key else None,  # what the PD proxies send on
                admin_env=ADMIN_ENV if proxy.is_cpconsoles else None,
                proxy_kind=proxy.kind_of,
                metrics_port=proxy.router_metrics_port if proxy.kind_of == "vllm-router" else None,
                setup=setup_of(profile, proxy.node, ("proxy",), container),
            )
        )
    nodes = tuple(
        NodePlan(
            name=name,
            host=spec.host,
            address=node_address(profile, name),
            transport=spec.transport or profile.defaults.transport,
            http=spec.http or profile.defaults.http,
            ssh=profile.defaults.ssh.merged(spec.ssh),
            chips=spec.chips,
            run_dir=spec.run_dir or profile.defaults.run_dir,
            tools=spec.tools or profile.defaults.tools,
            env=tuple(spec.env.items()),
        )
        for name, spec in profile.nodes.items()
    )
    return LaunchPlan(
        profile=profile.name,
        digest=loaded.digest,
        run_key=run_key,
        model_name=profile.model.served_name or profile.model.path,
        nodes=nodes,
        processes=tuple(processes),
        timeouts=profile.timeouts,
        log_max_mb=profile.defaults.log_max_mb,
        alerts=profile.alerts,
        notify=profile.notify,
        api_key=profile.api_key,
        containers=_containers(profile, processes),
    )


def _containers(profile: Profile, processes: list[ProcessPlan]) -> tuple[ContainerPlan, ...]:
    """One per (node, container) the processes name, in the order the processes come."""
    found: dict[tuple[str, str], ContainerPlan] = {}
    for proc in processes:
        owner = ("proxy",) if proc.role == "proxy" else ("instances", proc.instance or "")
        spec = effective_container(profile, proc.node, owner)
        if spec is None or (proc.node, spec[0].name) in found:
            continue
        container = spec[0]
        chips = profile.nodes[proc.node].chips
        mounts = (*DRIVER_MOUNTS, profile.model.path, *container.mounts)
        found[proc.node, container.name] = ContainerPlan(
            node=proc.node,
            name=container.name,
            image=container.image,
            shm_size=container.shm_size,
            devices=(*(f"/dev/davinci{i}" for i in range(chips)), *DRIVER_DEVICES) if chips else (),
            mounts=tuple(dict.fromkeys(mounts)),
            cli=proc.container_cli,
        )
    return tuple(found.values())
