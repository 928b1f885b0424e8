"""Preflight against the simulated nodes (npu-smi, hccn_tool, a Python with the Ascend stack), locally
and through the sshd: a clean bill of health, folded; then each broken thing, injected one by one,
named with its node, chip and hint."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from cpconsole.core.plan import build_plan
from cpconsole.core.preflight import Check, fold, ping_pairs, run_preflight
from cpconsole.core.preflight.chips import hbm_check
from cpconsole.core.preflight.npu_network import ChipConf, parse_hccn_conf
from cpconsole.core.preflight.report import ALL_NODES
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport, SSHTransport, Transport
from cpconsole.core.remote.errors import RemoteTimeout
from cpconsole.core.remote.types import RunResult
from cpconsole.core.telemetry.npu_smi import parse_info
from cpconsole.reports import preflight_text

from .conftest import FIXTURES
from .loopback import Block
from .simcluster import cluster, demo_text, over_ssh
from .sshd import Sshd, free_port
from .standins import container_state, install_docker_stand_in, install_sudo_stand_in, vllm_ascend_image


def node_env(text: str, node_ip: str, **env: str) -> str:
    extra = "".join(f"{k}: '{v}', " for k, v in env.items())
    return text.replace(f"env: {{CPCONSOLE_SIM_NODE: {node_ip},", f"env: {{{extra}CPCONSOLE_SIM_NODE: {node_ip},")


async def checks_of(
    text: str, model_path: str | None = None, ssh: bool = False, hash_weights: bool = False
) -> list[Check]:
    loaded = load_profile_text(text)
    plan = build_plan(loaded)
    nodes: dict[str, Transport] = {n.name: SSHTransport(n) if ssh else LocalTransport(n.name) for n in plan.nodes}
    try:
        return await run_preflight(
            plan, nodes, model_path=model_path, hash_weights=hash_weights, profile=loaded.profile, timeout=20
        )
    finally:
        for node in nodes.values():
            await node.close()


def failed(checks: list[Check]) -> dict[tuple[str, str, int | None], Check]:
    return {(c.node, c.check, c.chip): c for c in checks if c.status != "PASS"}


async def test_healthy_nodes_pass_and_fold_into_a_few_lines(tmp_path: Path) -> None:
    checks = await checks_of(demo_text(tmp_path))
    assert {c.status for c in checks} == {"PASS"}, [c for c in checks if c.status != "PASS"]
    lines = {line.text for line in fold(checks)}
    assert {
        "link UP on 48/48 chips",
        "net health Success on 48/48 chips",
        "address set on 48/48 chips",
        "OK on 48/48 chips",
        "16 chips on 3/3 nodes",
        "0% loss on 48/48 chip pairs",
        "0.13.0 on 3/3 nodes",
        "2.7.1.post1 on 3/3 nodes",
        "8.3.RC1 on 3/3 nodes",
        "25.2.1 on 3/3 nodes",
    } <= lines
    assert len(fold(checks)) < 26 < len(checks)


def test_the_chips_that_talk_are_pinged() -> None:
    plan = build_plan(load_profile_text(demo_text(Path("/nonexistent"))))
    # the two prefill nodes of one instance, and each prefill node to the decode node
    assert ping_pairs(plan) == [("prefill-a", "prefill-b"), ("prefill-a", "decode-a"), ("prefill-b", "decode-a")]


async def test_ports_held_by_the_profiles_own_running_processes_are_no_conflict(tmp_path: Path) -> None:
    from cpconsole.core.remote.launch import spawn_spec

    text = demo_text(tmp_path)
    plan = build_plan(load_profile_text(text))
    node = LocalTransport("prefill-a")
    handle = await node.spawn_detached(spawn_spec(plan, plan.process("proxy")))  # listens on prefill-a:8005
    try:
        for _ in range(200):
            with socket.socket() as probe:
                if probe.connect_ex((plan.process("proxy").address, 8005)) == 0:
                    break
            await asyncio.sleep(0.05)
        checks = await checks_of(text)
    finally:
        await node.stop(handle, grace=5)
        await node.close()
    ports = {c.node: c for c in checks if c.check == "ports"}
    assert ports["prefill-a"].status == "PASS", ports["prefill-a"]
    assert ports["prefill-a"].evidence.endswith("; not checked: proxy (running)")
    # nothing of ours runs there: all checked — http, dp rpc, 16 kv and HCCL's 16 host ports
    assert ports["decode-a"].evidence == "34 port(s) free"
    assert "free, but for the running processes' own on 1/3 nodes" in {line.text for line in fold(checks)}


async def test_hbm_held_by_the_profiles_own_running_processes_is_no_conflict(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    try:
        await c.start("decode-0")  # the simulated server takes HBM on every chip of decode-a
        await c.wait_http("decode-0")
        checks = await checks_of(c.text)
    finally:
        await c.stop_all()
    hbm = {x.node: x for x in checks if x.check == "HBM free"}
    assert hbm["decode-a"].status == "PASS", hbm["decode-a"]
    assert hbm["decode-a"].evidence == "16 chip(s) use HBM; not counted: decode-0 (running)"
    assert hbm["prefill-a"].evidence == "no chip holds HBM"


def test_hbm_held_by_another_job_is_a_warning() -> None:
    real = (FIXTURES / "npu-smi" / "vllm-ascend-issue-6085-a3-ascend910-16chip-procs.txt").read_text()
    check = hbm_check("n1", parse_info(real), ours=set())
    assert check.status == "WARN" and check.evidence.startswith("16 chip(s) already use HBM (pids 3742688, 3742689")


@pytest.mark.parametrize("over", ["local", "ssh"])
async def test_each_broken_thing_is_named_with_its_node_chip_and_hint(
    tmp_path: Path, over: str, request: pytest.FixtureRequest
) -> None:
    if over == "ssh":
        sshd: Sshd = request.getfixturevalue("sshd")
        text = over_ssh(demo_text(tmp_path, block=sshd.block), sshd, tmp_path, request.getfixturevalue("nodes_dir"))
    else:
        text = demo_text(tmp_path)
    a, b, d = (build_plan(load_profile_text(text)).node(n).address for n in ("prefill-a", "prefill-b", "decode-a"))
    text = node_env(text, a, CPCONSOLE_SIM_PING_LOSS="6")
    text = node_env(
        text, b, CPCONSOLE_SIM_LINK_DOWN="3", CPCONSOLE_SIM_NET_FAULT="9", CPCONSOLE_SIM_NPU_HEALTH="5=Alarm"
    )
    text = node_env(text, d, CPCONSOLE_SIM_CHIPS="8", CPCONSOLE_SIM_VERSIONS="torch-npu=2.6.0")
    with socket.socket() as squatter, socket.socket() as hccl:  # real listeners: HTTP, one of HCCL's ports
        for sock, port in ((squatter, 8004), (hccl, 60003)):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((d, port))
            sock.listen()
        checks = await checks_of(text, ssh=over == "ssh")
    bad = failed(checks)
    assert bad.pop(("prefill-b", "NPU link", 3)).evidence == "link DOWN"
    assert bad.pop(("prefill-b", "NPU net health", 3)).evidence == "net health Fault"  # a DOWN port is unhealthy too
    health = bad.pop(("prefill-b", "NPU net health", 9))
    assert health.evidence == "net health Fault" and "-net_health" in health.hint
    assert bad.pop(("prefill-b", "chip health", 5)).evidence == "Alarm"
    assert bad.pop(("decode-a", "chips", None)).evidence == "8 chips, profile says 16"
    # decode-a has 8 chips: 8..15 have no port, and nothing answers there
    for chip in range(8, 16):
        assert bad.pop(("decode-a", "NPU link", chip)).evidence == "link unknown"
        bad.pop(("decode-a", "NPU net health", chip))
        bad.pop(("decode-a", "NPU address", chip))
    ports = bad.pop(("decode-a", "ports", None))
    assert ports.evidence == "8004 (decode-0 http), 60003 (decode-0 hccl) already in use" and "ss -ltnp" in ports.hint
    # pings: from prefill-a chip 6 (lost) and from prefill-b chip 3 (its link is down)
    pinged = [c for c in checks if c.check == "NPU ping" and c.status == "FAIL"]
    assert {(c.node, c.chip, c.peer) for c in pinged} == {
        ("prefill-a", 6, "prefill-b chip 6"),
        ("prefill-a", 6, "decode-a chip 6"),
        ("prefill-b", 3, "decode-a chip 3"),
    }
    assert all(c.evidence.endswith("100.00% loss") and "hccn_tool" in c.hint for c in pinged)
    for c in pinged:
        bad.pop((c.node, c.check, c.chip), None)
    version = bad.pop(("decode-a", "torch-npu version", None))
    assert version.evidence == "2.6.0" and "prefill-a 2.7.1.post1" in version.hint
    table = bad.pop(("(all)", "versions", None)).evidence
    rows = [row.split() for row in table.splitlines()]
    assert rows[1] == ["prefill-a", "prefill-b", "decode-a"] and ["vllm", "0.13.0", "0.13.0", "0.13.0"] in rows
    assert ["torch-npu", "2.7.1.post1", "2.7.1.post1", "2.6.0", "≠"] in rows
    assert bad == {}, bad
    # the folded report: exceptions in full, the rest counted
    report = preflight_text(checks)
    assert "link UP on 39/48 chips" in report and "prefill-b chip 3: link DOWN" in report
    assert "0% loss on 29/32 chip pairs" in report and "prefill-a chip 6 → decode-a chip 6" in report


async def test_model_config_must_say_bfloat16_and_the_weights_match(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"torch_dtype": "float16"}))
    shards = [f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    weight_map = {"model.embed_tokens.weight": shards[0], "lm_head.weight": shards[1]}
    (model / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (model / shards[0]).write_bytes(b"\0" * 1000)
    (model / shards[1]).write_bytes(b"\0" * 500)
    bad = failed(await checks_of(demo_text(tmp_path), model_path=str(model)))
    assert "change torch_dtype from float16 to bfloat16" in bad[("decode-a", "model", None)].hint
    (model / "config.json").write_text(json.dumps({"dtype": "float16"}))  # the key newer transformers write
    assert failed(await checks_of(demo_text(tmp_path), model_path=str(model)))[("decode-a", "model", None)]
    told = demo_text(tmp_path).replace(
        "      max_model_len: 136000", "      max_model_len: 136000\n      dtype: float16"
    )
    overridden = [c for c in await checks_of(told, model_path=str(model)) if c.check == "model"]
    assert {(c.status, c.evidence) for c in overridden} == {
        ("PASS", "config.json dtype float16, run with --dtype float16")
    }
    (model / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    good = await checks_of(demo_text(tmp_path), model_path=str(model))
    assert {c.status for c in good} == {"PASS"}
    weights = [c for c in good if c.check == "weights"]
    assert len(weights) == 3 and weights[0].evidence.startswith("2 shards, 0.0 GB, sizes ")
    (model / shards[1]).unlink()  # a copy that stopped half way: a shard the index names is not there
    short = failed(await checks_of(demo_text(tmp_path), model_path=str(model)))[("decode-a", "weights", None)]
    assert short.evidence == f"1 of 2 shards missing: {shards[1]}" and "every shard" in short.hint
    missing = failed(await checks_of(demo_text(tmp_path), model_path=str(tmp_path / "nowhere")))
    assert missing[("prefill-a", "model", None)].hint == "model.path must exist on every node"


async def test_containers_must_run_and_map_every_chip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, state = tmp_path / "bin", tmp_path / "docker"
    docker = install_docker_stand_in(bin_dir)  # the profile's tools.docker: inspect, exec and probes use it
    state.mkdir()
    monkeypatch.setenv("DOCKER_STAND_IN_DIR", str(state))
    block = Block.fresh()
    text = (
        demo_text(tmp_path, block=block)
        .replace("python: [cpconsole-sim, python]}", f"python: [cpconsole-sim, python], docker: [{docker}]}}")
        .replace(f"decode-a: {{host: {block.ip(13)},", f"decode-a: {{container: vllm-d, host: {block.ip(13)},")
        .replace(f"prefill-b: {{host: {block.ip(12)},", f"prefill-b: {{container: vllm-p, host: {block.ip(12)},")
    )
    every = [f"/dev/davinci{i}" for i in range(16)] + ["/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"]
    container_state(state, "vllm-d", devices=[*every[:8], "/dev/davinci_manager"])  # the guide's 8 of 16
    # vllm-p does not exist yet
    bad = failed(await checks_of(text))
    devices = bad.pop(("decode-a", "devices", None))
    assert devices.evidence == "vllm-d lacks /dev/davinci8, 9, 10, 11, 12, 13, 14, 15, /dev/devmm_svm, /dev/hisi_hdc"
    assert "only 8" in devices.hint and "--device /dev/hisi_hdc" in devices.hint
    assert "No such object: vllm-p" in bad.pop(("prefill-b", "container", None)).evidence
    # docker exec into a container that is not there fails, as it would on the node
    assert "No such container: vllm-p" in bad.pop(("prefill-b", "software", None)).evidence
    assert bad == {}, bad  # versions were read inside the containers, through docker exec
    container_state(state, "vllm-p", running=False, devices=every)
    container_state(state, "vllm-d", privileged=True)  # every device
    (state / "vllm-d.path").write_text(str(tmp_path / "empty"))  # an image without util-linux's setsid
    bad = failed(await checks_of(text))
    stopped = bad.pop(("prefill-b", "container", None))
    assert stopped.evidence == "vllm-p not running" and stopped.hint == "docker start vllm-p"
    assert "container vllm-p is not running" in bad.pop(("prefill-b", "software", None)).evidence
    no_setsid = bad.pop(("decode-a", "setsid", None))
    assert no_setsid.evidence == "no setsid in vllm-d" and "util-linux" in no_setsid.hint
    assert "cannot ask vLLM's Python" in bad.pop(("decode-a", "software", None)).evidence  # no python there either
    assert bad == {}, bad


class Recording(LocalTransport):
    """This machine as a node, keeping every command it was asked to run."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.commands: list[str] = []

    async def run(
        self, command: str | Sequence[str], *, timeout: float = 30.0, input: bytes | None = None
    ) -> RunResult:
        self.commands.append(command if isinstance(command, str) else shlex.join(command))
        return await super().run(command, timeout=timeout, input=input)


async def test_the_model_is_read_where_the_server_sees_it_in_its_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker = install_docker_stand_in(tmp_path / "bin")
    monkeypatch.setenv("DOCKER_STAND_IN_DIR", str(tmp_path))
    text = demo_text(tmp_path).replace("  tools: {", f"  container: vllm-ascend\n  tools: {{docker: [{docker}], ", 1)
    plan = build_plan(load_profile_text(text))
    nodes = {n.name: Recording(n.name) for n in plan.nodes}
    try:
        await run_preflight(plan, dict(nodes), model_path="/models/m", timeout=20)
    finally:
        for node in nodes.values():
            await node.close()
    reads = [c for n in nodes.values() for c in n.commands if "config.json" in c or "safetensors" in c]
    # as the server starts: by bash, after the image's ~/.bashrc (the default setup in a container)
    assert len(reads) == 3 and all(c.startswith(f"{docker} exec") and " vllm-ascend bash -c " in c for c in reads)


def launch_checks(checks: list[Check]) -> dict[str, tuple[str, str]]:
    return {c.node: (c.status, c.evidence) for c in checks if c.check == "launch environment"}


async def test_torch_npu_is_imported_in_the_containers_launch_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the image's torch_npu needs the driver's library that only its ~/.bashrc puts on the path
    docker = install_docker_stand_in(tmp_path / "bin")
    monkeypatch.setenv("DOCKER_STAND_IN_DIR", str(tmp_path))
    vllm_ascend_image(tmp_path, "vllm-ascend", tmp_path / "image")
    text = demo_text(tmp_path).replace("  tools: {", f"  container: vllm-ascend\n  tools: {{docker: [{docker}], ", 1)
    prepared = launch_checks(await checks_of(text))
    assert prepared == {
        node: ("PASS", f"torch_npu imports where and as {server} starts")
        for node, server in (("prefill-a", "prefill-0"), ("prefill-b", "prefill-1"), ("decode-a", "decode-0"))
    }
    # `docker exec … sh -c`, as before setup lines: the ~/.bashrc unread, the library not found
    bare = launch_checks(
        await checks_of(text.replace("  container: vllm-ascend\n", "  container: vllm-ascend\n  setup: []\n"))
    )
    assert {status for status, _ in bare.values()} == {"FAIL"} and len(bare) == 3
    assert all("ImportError: libascend_hal.so: cannot open shared object file" in why for _, why in bare.values())


async def test_a_nodes_setup_lines_prepare_the_toolkit(tmp_path: Path) -> None:
    # on a node (no container) nothing is sourced unless the profile says so: CANN's libhccl.so is
    # found only through the toolkit's set_env.sh
    toolkit = tmp_path / "Ascend" / "ascend-toolkit"
    (toolkit / "latest" / "lib64").mkdir(parents=True)
    (toolkit / "latest" / "lib64" / "libhccl.so").write_bytes(b"")
    (toolkit / "set_env.sh").write_text(f"export LD_LIBRARY_PATH={toolkit}/latest/lib64:$LD_LIBRARY_PATH\n")
    text = demo_text(tmp_path, node_env={"prefill-b": {"CPCONSOLE_SIM_NEED_LIBS": "libhccl.so"}})
    unprepared = launch_checks(await checks_of(text))
    status, why = unprepared.pop("prefill-b")
    assert status == "FAIL" and why.startswith("import torch_npu, as prefill-1 starts: ImportError: libhccl.so")
    assert {s for s, _ in unprepared.values()} == {"PASS"}
    told = text.replace("  env:\n", f"  setup: [source {toolkit}/set_env.sh]\n  env:\n", 1)
    assert {s for s, _ in launch_checks(await checks_of(told)).values()} == {"PASS"}


async def test_over_ssh_healthy_nodes_pass(tmp_path: Path, sshd: Sshd, nodes_dir: str) -> None:
    clean = await checks_of(over_ssh(demo_text(tmp_path, block=sshd.block), sshd, tmp_path, nodes_dir), ssh=True)
    assert {c.status for c in clean} == {"PASS"}, [c for c in clean if c.status != "PASS"]
    assert {c.same for c in clean if c.check == "reachable"} == {"as root"}


class StallsOn(LocalTransport):
    """This machine as a node, but a command that mentions `word` never answers (a hung NFS
    mount under the model path, say): it times out as a slow node's would."""

    def __init__(self, node: str, word: str) -> None:
        super().__init__(node)
        self.word = word

    async def run(
        self, command: str | Sequence[str], *, timeout: float = 30.0, input: bytes | None = None
    ) -> RunResult:
        text = command if isinstance(command, str) else " ".join(command)
        if self.word in text:
            raise RemoteTimeout(self.node, f"no answer within {timeout:g} s")
        return await super().run(command, timeout=timeout, input=input)


async def test_a_check_that_times_out_fails_alone(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"torch_dtype": "bfloat16"}')
    plan = build_plan(load_profile_text(demo_text(tmp_path)))
    transports: dict[str, Transport] = {n.name: LocalTransport(n.name) for n in plan.nodes}
    transports["decode-a"] = StallsOn("decode-a", "config.json")
    checks = {(c.node, c.check): c for c in await run_preflight(plan, transports, model_path=str(model))}
    stalled = checks[("decode-a", "model")]
    assert stalled.status == "FAIL" and "no answer within" in stalled.evidence
    assert checks[("prefill-a", "model")].status == "PASS"  # the other nodes' model checks ran
    assert {checks[("decode-a", c)].status for c in ("reachable", "chips", "ports", "disk")} == {"PASS"}


async def test_an_unreachable_node_fails_alone(tmp_path: Path, sshd: Sshd) -> None:
    plan = build_plan(load_profile_text(demo_text(tmp_path)))
    transports: dict[str, Transport] = {n.name: LocalTransport(n.name) for n in plan.nodes}
    nowhere = Block.fresh().ip(15)  # no one listens there
    transports["decode-a"] = SSHTransport(sshd.node(nowhere, port=free_port(nowhere)), connect_timeout=2)
    checks = {(c.node, c.check): c for c in await run_preflight(plan, transports, model_path=None)}
    assert checks[("decode-a", "reachable")].status == "FAIL"
    assert [k for k in checks if k[0] == "decode-a"] == [("decode-a", "reachable")]
    assert checks[("prefill-a", "chips")].status == "PASS"
    assert ("prefill-a", "NPU ping") in checks  # prefill-a still pings prefill-b


def test_cpconsole_preflight_shows_the_profiles_warnings_and_exits_0(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"  # its prefill kv ports moved into Mooncake's random range
    profile.write_text(demo_text(tmp_path).replace("kv_port: 36000", "kv_port: 30000"))
    done = subprocess.run(
        [sys.executable, "-m", "cpconsole", "preflight", str(profile)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr  # a warning is not a failure
    warnings = [line for line in done.stdout.splitlines() if line.lstrip().startswith("WARN")]
    assert len(warnings) == 2  # one per prefill rank, each with its own port range
    assert all("demo.yaml:" in w and "inside Mooncake's random port range" in w for w in warnings)
    assert "prefill-0 listens on 30000-30015" in warnings[0] and "prefill-1 listens on 30016-30031" in warnings[1]
    assert "link UP on 48/48 chips" in done.stdout
    assert done.stdout.rstrip().endswith("0 failed, 2 warning(s), 387 passed")


def test_a_clock_is_off_only_by_more_than_a_slow_answer_can_explain() -> None:
    from cpconsole.core.preflight.node import clock_check

    # asked at 100.0, answered at 104.3 (a loaded node): its clock was read somewhere in between
    slow = clock_check("n1", theirs=104.29, asked=100.0, answered=104.3)
    assert slow.status == "PASS" and slow.evidence == "+2.14 s against this machine (± 2.15 s: a slow answer)"
    fast = clock_check("n1", theirs=102.51, asked=100.0, answered=100.02)  # 20 ms: it really is 2.5 s ahead
    assert fast.status == "WARN" and fast.evidence == "+2.50 s against this machine" and "chrony" in fast.hint


async def test_the_installed_versions_go_through_the_profiles_version_rules(tmp_path: Path) -> None:
    """The demo declares vllm-ascend 0.13.0; its nodes run 0.25.1rc1, which refuses PCP: validate
    could not know, preflight does — with both versions."""
    text = demo_text(tmp_path, extra_env={"CPCONSOLE_SIM_VERSIONS": "vllm-ascend=0.25.1rc1"})
    checks = await checks_of(text)
    declared = only(c for c in checks if c.check == "declared version")
    assert declared.status == "WARN" and declared.node == ALL_NODES
    assert declared.evidence == "vllm-ascend: the profile says 0.13.0, the nodes run 0.25.1rc1"
    assert 'set versions.vllm_ascend: "0.25.1rc1"' in declared.hint
    refused = only(c for c in checks if c.check == "installed version" and c.status == "FAIL")
    assert "vllm-ascend 0.25.1rc1 rejects prefill_context_parallel_size > 1" in refused.evidence
    stale = only(c for c in checks if c.check == "installed version" and c.status == "WARN")
    assert "VLLM_ASCEND_ENABLE_CONTEXT_PARALLEL" in stale.hint and "no effect on 0.25.1rc1" in stale.evidence
    assert not [c for c in await checks_of(demo_text(tmp_path)) if "version" in c.check and c.status != "PASS"]


async def test_context_parallel_needs_atlas_a3_chips(tmp_path: Path) -> None:
    text = demo_text(tmp_path)
    b = build_plan(load_profile_text(text)).node("prefill-b").host
    checks = await checks_of(node_env(text, b, CPCONSOLE_SIM_CHIP_NAME="910B3"))
    wrong = only(c for c in checks if c.check == "chips for CP" and c.status != "PASS")
    assert wrong.node == "prefill-b" and wrong.evidence == "910B3 chips; prefill-1 runs PCP 2 × DCP 8"
    assert "needs Atlas A3" in wrong.hint
    assert {c.node for c in checks if c.check == "chips for CP"} == {"prefill-a", "prefill-b"}  # the decode runs no CP


def only(found: Iterable[Check]) -> Check:
    items = list(found)
    assert len(items) == 1, items
    return items[0]


async def test_one_tls_switch_on_every_chip_that_talks(tmp_path: Path) -> None:
    """HCCL's EI0006 asks to check it: TLS on one chip of a prefill node and off on its peers."""
    text = demo_text(tmp_path)
    b = build_plan(load_profile_text(text)).node("prefill-b").host
    checks = [c for c in await checks_of(node_env(text, b, CPCONSOLE_SIM_TLS_ON="7")) if c.check == "NPU TLS"]
    assert {(c.node, c.status) for c in checks} == {("prefill-a", "PASS"), ("prefill-b", "FAIL"), ("decode-a", "PASS")}
    odd = only(c for c in checks if c.status == "FAIL")
    assert odd.evidence == "TLS enabled on chips 7, disabled on the other chips that talk"
    assert "hccn_tool -i N -tls -s enable" in odd.hint


def test_hccn_conf_is_read_as_the_driver_writes_it() -> None:
    real = parse_hccn_conf((FIXTURES / "hccn-tool" / "arthurchiao-blog-910b-hccn-conf.txt").read_text())
    assert set(real) == {0, 7}  # the post elides chips 1-6
    assert real[7] == ChipConf("29.1.170.143", "255.255.0.0", "29.1.0.1", "29.1.0.1")
    assert not real[0].outside("29.1.0.1") and real[0].outside("29.2.0.1")


async def test_gateway_and_detect_ip_set_on_every_chip_that_talks_inside_its_subnet(tmp_path: Path) -> None:
    text = demo_text(tmp_path)
    b = build_plan(load_profile_text(text)).node("prefill-b").host
    faults = {
        "CPCONSOLE_SIM_NO_GATEWAY": "3",
        "CPCONSOLE_SIM_GATEWAY_OFFNET": "4",
        "CPCONSOLE_SIM_NO_NETDETECT": "5",
        "CPCONSOLE_SIM_CONF_ADDRESS": "6",
    }
    kinds = ("NPU gateway", "NPU detect IP", "NPU address", "hccn.conf")
    checks = [c for c in await checks_of(node_env(text, b, **faults)) if c.check in kinds]
    bad = failed(checks)
    assert (
        bad.pop(("prefill-b", "NPU gateway", 3)).evidence
        == "no gateway_3 in /etc/hccn.conf (other chips that talk have one)"
    )
    offnet = bad.pop(("prefill-b", "NPU gateway", 4))
    subnet = f"29.0.{int(b.rsplit('.', 1)[1]) % 256}"  # the simulator's NPU addresses: 29.0.<node's last byte>.<chip>
    assert offnet.evidence == f"gateway 29.9.0.1 is outside the chip's subnet {subnet}.4/255.255.0.0"
    assert offnet.hint == "hccn_tool -i 4 -gateway -s address <an IP in it>"
    assert bad.pop(("prefill-b", "NPU detect IP", 5)).hint == "hccn_tool -i 5 -netdetect -s address …"
    moved = bad.pop(("prefill-b", "NPU address", 6))
    assert moved.status == "WARN" and moved.evidence == f"hccn.conf says 29.0.250.6, the chip runs with {subnet}.6"
    assert bad == {}, bad
    passed = [c for c in checks if c.check in ("NPU gateway", "NPU detect IP") and c.status == "PASS"]
    assert len(passed) == 2 * 48 - 3
    assert "gateway set, in the chip's subnet on 46/48 chips" in {line.text for line in fold(checks)}


async def test_an_unreadable_hccn_conf_is_a_warning_and_nothing_else_fails(tmp_path: Path) -> None:
    text = demo_text(tmp_path).replace(
        "hccn_conf: [cpconsole-sim, hccn.conf]", "hccn_conf: [cat, /nonexistent/hccn.conf]"
    )
    checks = await checks_of(text)
    unreadable = [c for c in checks if c.check == "hccn.conf"]
    assert {(c.node, c.status) for c in unreadable} == {(n, "WARN") for n in ("prefill-a", "prefill-b", "decode-a")}
    assert "No such file" in unreadable[0].evidence and "tools.hccn_conf" in unreadable[0].hint
    assert not [c for c in checks if c.check in ("NPU gateway", "NPU detect IP")]
    assert {c.status for c in checks if c.check != "hccn.conf"} == {"PASS"}


async def test_the_nic_exists_and_carries_hccl_if_ip(tmp_path: Path) -> None:
    healthy = [c for c in await checks_of(demo_text(tmp_path)) if c.check in ("nic", "HCCL_IF_IP")]
    assert len(healthy) == 6 and {c.status for c in healthy} == {"PASS"}  # lo carries 127/8
    wrong = demo_text(tmp_path).replace("  nic: lo", "  nic: nosuch0")
    checks = [c for c in await checks_of(wrong) if c.check in ("nic", "HCCL_IF_IP")]
    assert {(c.check, c.status) for c in checks} == {("nic", "FAIL"), ("HCCL_IF_IP", "FAIL")}
    nic = next(c for c in checks if c.check == "nic")
    assert nic.evidence == "nosuch0 is not on this node" and "lo" in nic.hint
    assert next(c for c in checks if c.check == "HCCL_IF_IP").evidence.endswith(" on lo")


async def test_a_tool_behind_sudo_never_waits_on_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the login user may not run npu-smi without a password: sudo -n says so, and the hint what to do
    sudo = install_sudo_stand_in(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{sudo.parent}:{os.environ['PATH']}")
    text = demo_text(tmp_path).replace("npu_smi: [cpconsole-sim, npu-smi]", "npu_smi: [sudo, cpconsole-sim, npu-smi]")
    assert build_plan(load_profile_text(text)).nodes[0].tools.npu_smi == ("sudo", "-n", "cpconsole-sim", "npu-smi")
    refused = [c for c in await checks_of(text) if "a password is required" in c.evidence]
    assert {c.node for c in refused} == {"prefill-a", "prefill-b", "decode-a"}
    assert all("sudoers NOPASSWD" in c.hint and c.status == "FAIL" for c in refused)


async def test_every_shards_sha256_on_request_names_the_shard_whose_bytes_differ(tmp_path: Path) -> None:
    # each node its own copy (the model path under each node's HOME): decode-a's second shard has the
    # right size and one wrong byte — sizes agree, only the bytes tell
    shards = [f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    for node in ("prefill-a", "prefill-b", "decode-a"):
        model = tmp_path / node / "m"
        model.mkdir(parents=True)
        (model / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
        weight_map = {"model.embed_tokens.weight": shards[0], "lm_head.weight": shards[1]}
        (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        (model / shards[0]).write_bytes(b"\1" * 4096)
        (model / shards[1]).write_bytes(b"\2" * 2048 if node != "decode-a" else b"\2" * 2047 + b"\3")
    homes = {node: {"HOME": str(tmp_path / node)} for node in ("prefill-a", "prefill-b", "decode-a")}
    text = demo_text(tmp_path, node_env=homes)
    sized = [c for c in await checks_of(text, model_path="~/m") if c.check.startswith("weights")]
    assert {c.status for c in sized} == {"PASS"} and {c.check for c in sized} == {"weights"}  # sizes agree
    hashed = {
        c.node: c for c in await checks_of(text, model_path="~/m", hash_weights=True) if c.check == "weights sha256"
    }
    assert hashed["decode-a"].status == "FAIL"
    assert hashed["decode-a"].evidence == f"1 shard(s) differ from the other nodes': {shards[1]}"
    assert "--checksum" in hashed["decode-a"].hint
    assert [(hashed[n].status, hashed[n].evidence) for n in ("prefill-a", "prefill-b")] == [
        ("PASS", "2 shards, 0.0 GB read")
    ] * 2


async def test_a_disk_that_cannot_hold_the_capped_logs_is_warned_of(tmp_path: Path) -> None:
    text = demo_text(tmp_path).replace("  env:\n", "  log_max_mb: 100000000\n  env:\n", 1)  # 100 TB a log
    disk = {c.node: c for c in await checks_of(text) if c.check == "disk"}
    assert {c.status for c in disk.values()} == {"WARN"}
    assert "logs may take 292968.8 GB (log_max_mb 100000000)" in disk["prefill-a"].hint  # two processes there
    assert "logs may take 146484.4 GB" in disk["decode-a"].hint
