"""The profile schema: what an operator writes in YAML, validated by pydantic.

Every model is frozen and rejects unknown keys; the loader turns pydantic's errors into
`file:line:col: path: message` lines with a "did you mean" where a key looks misspelt.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_validator,
    model_validator,
)

# ---------------------------------------------------------------- scalar types


def _plain_text(value: Any) -> Any:
    """Accept strings and integers; refuse YAML values that would silently change on the way.

    YAML reads `false` as a boolean and `0.10` as the float 0.1; turning those back into text
    could give a value the operator never wrote, so we ask for quotes instead.
    """
    if isinstance(value, bool):
        raise ValueError(f'YAML read this as the boolean {value}; quote it to pass text, e.g. "{value}"')
    if isinstance(value, float):
        raise ValueError(f"YAML read this as the number {value}; quote it so the exact text is kept")
    if isinstance(value, int):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_plain_text)]
"""A string that also accepts YAML integers (`768` → "768")."""

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"

PATTERN_HELP = {
    ENV_NAME_RE.pattern: "use letters, digits and _, not starting with a digit",
    NAME_RE: "use letters, digits, '.', '_' and '-', starting with a letter or digit",
}

FLAG_RE = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
PATTERN_HELP[FLAG_RE] = "flag names use letters, digits, '_' and '-' (no leading '--')"

EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_RE.pattern)]
Name = Annotated[str, StringConstraints(pattern=NAME_RE, max_length=64)]
HOST_RE = r"^[A-Za-z0-9._:%\[\]@-]+$"  # addresses and ssh_config aliases; nothing a shell would expand
Host = Annotated[str, StringConstraints(pattern=HOST_RE, max_length=255)]
PATTERN_HELP[HOST_RE] = "an address or ssh_config alias: letters, digits and . _ : % [ ] @ - only"
RUN_DIR_RE = r"^(~|~/.*|/.*)$"
RunDir = Annotated[str, StringConstraints(pattern=RUN_DIR_RE)]
PATTERN_HELP[RUN_DIR_RE] = (
    "run_dir must be absolute or start with ~/ (the login user's home): a relative one would depend "
    "on where cpconsole is run from"
)
Port = Annotated[int, Field(ge=1, le=65535)]
MAX_PARALLEL = 4096  # ranks of one parallel dimension: bounds every loop over ranks
Env = dict[EnvName, Text]
FlagName = Annotated[str, StringConstraints(pattern=FLAG_RE)]
Flags = dict[FlagName, JsonValue]
Argv = Annotated[tuple[str, ...], Field(min_length=1)]
# bash lines run before a process starts, where it runs (its container or node): how its shell is
# prepared, as the guide's interactive `docker exec -it … bash` prepares it. Unset on every level:
# in a container the image's ~/.bashrc (plan.IMAGE_SHELL), on a node nothing; [] runs none.
SETUP_HELP = "bash lines run before the process starts, in its container or on its node (e.g. source …/set_env.sh)"
Setup = Annotated[tuple[str, ...] | None, Field(description=SETUP_HELP)]

Role = Literal["prefill", "decode", "colocated"]
TransportKind = Literal["ssh", "local"]
# how cpconsole's HTTP (readiness, health, metrics, smoke, prompt, sweep, drain) reaches a node's
# servers: straight to its address, through its SSH connection (a jump host that reaches the nodes by
# SSH only), or auto: straight where the address answers, else through SSH
HttpRoute = Literal["direct", "ssh", "auto"]


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------- sections


class Versions(Strict):
    """Software versions the deployment targets; version-aware rules read them."""

    vllm: Text | None = None
    vllm_ascend: Text | None = None


class Model(Strict):
    path: str = Field(description="Weights directory as seen by the serving processes")
    served_name: str | None = Field(default=None, description="--served-model-name")
    check_path: bool = Field(default=True, description="preflight reads <path>/config.json on every node")


class SshSettings(Strict):
    """How to reach a node. Unset fields fall back to ~/.ssh/config, then to OpenSSH defaults."""

    user: str | None = None
    port: Port | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    proxy_jump: str | None = None
    config_file: str | None = Field(default=None, description="ssh_config to read instead of ~/.ssh/config")
    verify_host_keys: bool = Field(
        default=True, description="false disables host key checks (shown as a warning everywhere)"
    )

    def merged(self, override: SshSettings | None) -> SshSettings:
        """This settings block with every field the override set explicitly replaced."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


class Container(Strict):
    """The container the processes are started in with `docker exec`: made by hand (a name), or
    made by `cpconsole containers create` from an image as the guide's `docker run` does."""

    name: str
    devices: tuple[str, ...] | None = Field(
        default=None, description="Devices a hand-made container maps (checked against the node's chips)"
    )
    image: str | None = Field(default=None, description="Set: cpconsole creates the container from this image")
    shm_size: str = Field(default="1g", pattern=r"^[0-9]+[bkmg]?$", description="--shm-size of a created container")
    mounts: tuple[str, ...] = Field(
        default=(),
        description="More host directories mounted at the same path (the driver's, the tools' and the model's always are)",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


def _never_prompts(argv: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """A tool run through sudo runs as `sudo -n`: a password prompt becomes sudo's error ("a
    password is required", sudo(8) -n) instead of a wait without end on a terminal or a silent
    failure over SSH."""
    if not argv or argv[0].rsplit("/", 1)[-1] != "sudo":
        return argv
    options = itertools.takewhile(lambda w: w.startswith("-"), argv[1:])
    if any(w == "--non-interactive" or (not w.startswith("--") and "n" in w[1:]) for w in options):
        return argv
    return (argv[0], "-n", *argv[1:])


class Tools(Strict):
    """How to run the node tools cpconsole reads (a sim node: [cpconsole-sim, npu-smi]). A tool
    through sudo runs with -n (it never waits on a password prompt)."""

    @field_validator("npu_smi", "hccn_tool", "hccn_conf", "python", "docker", "ais_bench", mode="after")
    @classmethod
    def _sudo_never_prompts(cls, argv: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _never_prompts(argv)

    npu_smi: Argv = ("npu-smi",)
    hccn_tool: Argv = ("hccn_tool",)
    # prints the chips' network configuration (address_N, gateway_N, netdetect_N…)
    hccn_conf: Argv = ("cat", "/etc/hccn.conf")
    # the Python that runs vLLM, asked for package versions; unset: the interpreter of vllm_command
    python: Argv | None = None
    # the container CLI for processes with a `container` (docker's commands: e.g. [sudo, docker], [isula])
    docker: Argv = ("docker",)
    # AISBench's CLI where vLLM runs (`cpconsole accuracy --aisbench`)
    ais_bench: Argv = ("ais_bench",)


class Defaults(Strict):
    """Inherited by every node and instance; each may override."""

    transport: TransportKind = "ssh"
    http: HttpRoute = Field(default="auto", description="how HTTP reaches the servers: direct, ssh (forwarded) or auto")
    ssh: SshSettings = SshSettings()
    nic: str | None = Field(
        default=None, description="NIC for HCCL/Gloo/TP sockets; sets HCCL_IF_IP and *_SOCKET_IFNAME"
    )
    container: Container | None = None
    env: Env = {}
    vllm_command: Argv = ("vllm",)
    setup: Setup = None
    run_dir: RunDir = Field(default="~/.cache/cpconsole", description="Base of per-process run directories")
    log_max_mb: int = Field(
        default=1024,
        ge=1,
        description="each process's log is kept under this; past it, its newest half goes to log.cut",
    )
    tools: Tools = Tools()


class Node(Strict):
    host: Host = Field(description="SSH target: an address or a Host alias from ssh_config")
    address: Host | None = Field(
        default=None, description="IP the services use (HCCL_IF_IP, master address); default: host"
    )
    chips: int = Field(ge=0, le=256, description="NPU chips on this node (A3: 16); 0: no NPUs (a CPU node)")
    transport: TransportKind | None = None
    http: HttpRoute | None = None
    ssh: SshSettings | None = None
    nic: str | None = None
    container: Container | None = None
    env: Env = Field(default={}, description="Environment of everything run on this node, tools included")
    setup: Setup = None
    run_dir: RunDir | None = None
    tools: Tools | None = None


class KvConnector(Strict):
    """The --kv-transfer-config connector; role, port, engine id and topology are derived."""

    name: str
    module_path: str | None = Field(default=None, description="kv_connector_module_path")
    extra: dict[str, JsonValue] = Field(default={}, description="kv_connector_extra_config entries")
    options: dict[str, JsonValue] = Field(default={}, description="Other top-level kv-transfer-config keys")
    topology: bool = Field(
        default=True, description="Add the prefill/decode dp_size and tp_size blocks to the extra config"
    )
    kv_params: bool = Field(
        default=True,
        description="The prefill answers with kv_transfer_params (Mooncake, LLMDataDist). False for connectors "
        "that hand the KV over another way (ExampleConnector): cpconsole's proxy then forwards without them",
    )


class DataParallel(Strict):
    """Data parallelism spread over the instance's nodes; per-node flags are derived."""

    size: int = Field(ge=1, le=MAX_PARALLEL)
    rpc_port: Port | None = None
    hybrid_lb: bool = Field(default=False, description="Every node runs its own API server (--data-parallel-hybrid-lb)")


class Instance(Strict):
    role: Role
    nodes: Annotated[tuple[str, ...], Field(min_length=1)] = Field(
        description="The first node is node-rank 0 (the master)"
    )
    port: Port
    bind: str = Field(default="0.0.0.0", description="--host; 'node' means the node's address")
    master_port: Port | None = None
    kv_port: Port | None = None
    engine_ids: tuple[Text, ...] | None = None
    kv_connector: KvConnector | None = None
    data_parallel: DataParallel | None = None
    env: Env = {}
    vllm_args: Flags = Field(
        default={}, description="vllm serve flags by name: true = bare flag, false = --no-flag, dict/list = JSON"
    )
    vllm_command: Argv | None = None
    container: Container | None = None
    cwd: str | None = None
    setup: Setup = None

    def arg(self, name: str) -> JsonValue:
        """A vllm_args value by its flag name, whichever of `_` or `-` the profile used."""
        for key, value in self.vllm_args.items():
            if flag_name(key) == flag_name(name):
                return value
        return None

    def arg_key(self, name: str) -> str | None:
        """The key as spelt in the profile, for error locations."""
        for key in self.vllm_args:
            if flag_name(key) == flag_name(name):
                return key
        return None


ProxyKind = Literal["cpconsole", "vllm-ascend-example", "vllm-router"]
# vllm-ascend's KV connectors hand kv_transfer_params from the prefill's answer to the decode, as
# NIXL does: vllm-router's `nixl` mode. Its `mooncake` mode instead asks a bootstrap server on each
# prefill node (upstream vLLM's Mooncake protocol), which MooncakeConnectorV1 does not run.
ROUTER_KV_MODE = "nixl"
DEFAULT_COMMANDS: dict[str, tuple[str, ...]] = {
    "cpconsole": ("python", "-m", "cpconsole.proxy"),
    "vllm-router": ("vllm-router",),  # the vLLM project's Rust router (`pip install vllm-router`)
}


class Proxy(Strict):
    node: str
    port: Port
    kind: ProxyKind | None = Field(
        default=None,
        description="cpconsole | vllm-ascend-example | vllm-router; unset: told by the command (cpconsole's or the example)",
    )
    bind: str | None = Field(default=None, description="--host; default: the node's address")
    command: Argv = DEFAULT_COMMANDS["cpconsole"]
    metrics_port: Port | None = Field(default=None, description="vllm-router's Prometheus port; default: port + 1")
    args: Flags = {}
    env: Env = {}
    container: Container | None = None
    cwd: str | None = None
    setup: Setup = None

    @model_validator(mode="before")
    @classmethod
    def _kind_command(cls, data: Any) -> Any:
        """A kind without a command runs that kind's usual one; the example has none (its path)."""
        if isinstance(data, dict) and isinstance(kind := data.get("kind"), str) and "command" not in data:
            if kind == "vllm-ascend-example":
                raise ValueError("kind vllm-ascend-example needs a command: the example proxy's path where it runs")
            if kind in DEFAULT_COMMANDS:
                data = {**data, "command": DEFAULT_COMMANDS[kind]}
        return data

    @property
    def kind_of(self) -> ProxyKind:
        """What runs: the kind given, else cpconsole's proxy when the command is it, else the example."""
        if self.kind is not None:
            return self.kind
        ours = any(w == "cpconsole.proxy" or w.rsplit("/", 1)[-1] == "cpconsole-proxy" for w in self.command)
        return "cpconsole" if ours else "vllm-ascend-example"

    @property
    def is_cpconsoles(self) -> bool:
        """cpconsole's own proxy (which knows its --kv-params and --require-api-key)."""
        return self.kind_of == "cpconsole"

    @property
    def router_metrics_port(self) -> int:
        return self.metrics_port or self.port + 1


class SmokeAccuracy(Strict):
    """A quick accuracy check as one more smoke check (`cpconsole smoke`, after an up or an apply)."""

    dataset: Name = Field(default="gsm8k", description="a built-in dataset (`cpconsole accuracy` lists them)")
    limit: int = Field(default=20, ge=1, le=1000, description="its first N items")
    min: float = Field(ge=0, le=100, description="the lowest accuracy, in percent, that passes")
    max_tokens: int | None = Field(default=None, ge=1, description="answer budget; default: 1024, less to fit")


class Smoke(Strict):
    needle_tokens: int | None = Field(default=None, ge=1, description="Prompt length of the needle test")
    max_tokens: int = Field(default=64, ge=1)
    accuracy: SmokeAccuracy | None = None


class Bench(Strict):
    random_input_len: int = Field(default=1024, ge=1)
    random_output_len: int = Field(default=128, ge=1)
    num_prompts: int = Field(default=20, ge=1)
    request_rate: float | None = Field(default=None, gt=0, description="Poisson requests/s; unset: all at once")


class AccuracyGate(Strict):
    """What `cpconsole accuracy` must reach on a dataset for exit 0 (a script gates a rollout on it)."""

    min: float = Field(ge=0, le=100, description="the lowest accuracy, in percent, that passes")


class Timeouts(Strict):
    """Seconds each start-up stage may take (real DeepSeek loads take many minutes)."""

    prefill: float = Field(default=1800, gt=0, description="prefill instances until /health answers")
    decode: float = Field(default=1800, gt=0, description="decode instances until /health answers")
    colocated: float = Field(default=1800, gt=0)
    proxy: float = Field(default=120, gt=0, description="the proxy until /healthcheck answers")
    probe: float = Field(default=300, gt=0, description="the 1-token request through the proxy")
    stop_grace: float = Field(default=30, gt=0, description="SIGTERM to SIGKILL when stopping")
    drain: float = Field(
        default=120, ge=0, description="an instance being restarted: for the requests it holds to end, out of rotation"
    )
    pull: float = Field(default=3600, gt=0, description="containers create: the image's pull on every node")


class Alerts(Strict):
    """When the console raises alerts and calls a process stalled."""

    hbm_pct: float = Field(default=95, gt=0, le=100, description="chip HBM use above this")
    kv_cache_pct: float = Field(default=90, gt=0, le=100, description="KV-cache usage above this …")
    kv_cache_for_s: float = Field(default=30, ge=0, description="… for this long")
    waiting_for_s: float = Field(default=60, ge=0, description="requests waiting this long")
    stall_after_s: float = Field(default=30, gt=0, description="no progress this long: stalled")
    computing_stall_after_s: float = Field(
        default=600, gt=0, description="… or this long while its chips compute (one long unchunked prefill)"
    )
    error_lines: bool = Field(
        default=True, description="a known failure in a running process's log (docs/failures.md) raises an alert"
    )
    error_lines_clear_s: float = Field(default=120, gt=0, description="… until its lines stop for this long")
    bundle_on: Literal["critical", "warning"] | None = Field(
        default=None, description="the console writes an incident bundle when an alert this grave is raised"
    )
    bundle_keep: int = Field(default=5, ge=1, description="… keeping this many of the profile's newest")


URL_RE = r"^https?://[^\s/?#]+[^\s]*$"
PATTERN_HELP[URL_RE] = "an http:// or https:// address, no spaces"


class Webhook(Strict):
    """Where alerts are POSTed as JSON (Slack-style receivers read its `text`)."""

    url: Annotated[str, StringConstraints(pattern=URL_RE, max_length=2048)]
    token_env: EnvName | None = Field(
        default=None, description="environment variable on the jump host holding a bearer token"
    )
    retries: int = Field(default=3, ge=0, le=10, description="more tries after a failed one, with backoff")
    backoff_s: float = Field(default=2, gt=0, le=300, description="wait before the first retry; doubles each time")
    max_per_minute: int = Field(default=10, ge=1, description="more than this in a minute are dropped and counted")


class Notify(Strict):
    """Who hears of an alert, once when it is raised and once when it clears."""

    min_severity: Literal["warning", "critical"] = "warning"
    bell: bool = Field(default=True, description="the terminal bell, in the console")
    tmux: bool = Field(default=True, description="tmux display-message, when the console runs in tmux")
    webhooks: tuple[Webhook, ...] = ()


class ApiKey(Strict):
    """Where the jump host keeps the key the servers run with (vLLM's --api-key): every request
    cpconsole sends carries it; the launch scripts and logs never hold it."""

    env: EnvName | None = Field(default=None, description="an environment variable of the jump host")
    file: str | None = Field(default=None, description="a file on the jump host (~ allowed), its first line")

    @model_validator(mode="after")
    def _one_source(self) -> ApiKey:
        if (self.env is None) == (self.file is None):
            raise ValueError("give the key's env or its file, one of them")
        return self


class Profile(Strict):
    name: Name
    versions: Versions = Versions()
    model: Model
    defaults: Defaults = Defaults()
    nodes: Annotated[dict[Name, Node], Field(min_length=1)]
    instances: Annotated[dict[Name, Instance], Field(min_length=1)]
    proxy: Proxy | None = None
    smoke: Smoke | None = None
    bench: Bench | None = None
    accuracy: dict[Name, AccuracyGate] = Field(
        default={}, description="dataset → the accuracy `cpconsole accuracy` must reach (e.g. gsm8k: {min: 90})"
    )
    timeouts: Timeouts = Timeouts()
    alerts: Alerts = Alerts()
    notify: Notify = Notify()
    api_key: ApiKey | None = None


def flag_name(key: str) -> str:
    """vLLM treats `--max_model_len` and `--max-model-len` alike; so do we."""
    return key.replace("_", "-")
