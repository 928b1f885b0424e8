"""Containers made right: the guide's `docker run` rendered with every chip, created on each node,
checked against the profile (network, devices, mounts, shared memory, image) and removed — never
under a running process. No docker engine runs on these machines: a stand-in keeps each container
as the JSON `docker inspect` prints of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpconsole.core.orchestrate import containers
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport, Transport

from .loopback import Block
from .simcluster import demo_text
from .standins import install_docker_stand_in
from .test_orchestrate import cpconsole

IMAGE = "m.daocloud.io/quay.io/ascend/vllm-ascend:v0.15.0rc1"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "docker"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_STAND_IN_DIR", str(folder))
    return folder


NAMES = {"prefill-a": "vllm-pa", "prefill-b": "vllm-pb", "decode-a": "vllm-d"}  # the nodes share one stand-in


def node_tools(docker: list[str]) -> str:
    sim = "npu_smi: [cpconsole-sim, npu-smi], hccn_tool: [cpconsole-sim, hccn_tool], hccn_conf: [cpconsole-sim, hccn.conf]"
    return f"tools: {{{sim}, python: [cpconsole-sim, python], docker: [{', '.join(docker)}]}}, "


def in_containers(tmp_path: Path, registries: dict[str, Path] | None = None) -> Path:
    """The demo with every process in the guide's container, created by cpconsole; each node's
    docker keeps its own images (`registry`: the one it pulls from, when given)."""
    docker = install_docker_stand_in(tmp_path / "bin")
    registries = registries or {}
    text = demo_text(tmp_path, block=Block.fresh())
    for node, name in NAMES.items():
        container = f"{{name: {name}, image: '{IMAGE}', mounts: [/root/.cache]}}"
        daemon = ["env", f"DOCKER_STAND_IN_IMAGES={tmp_path}/{node}-images.json"]
        if node in registries:
            daemon.append(f"DOCKER_STAND_IN_REGISTRY={registries[node]}")
        tools = node_tools([*daemon, str(docker)])
        text = text.replace(f"  {node}: {{host:", f"  {node}: {{container: {container}, {tools}host:")
    profile = tmp_path / "demo.yaml"
    profile.write_text(text)
    return profile


def test_render_shows_the_guides_docker_run_with_every_chip(tmp_path: Path) -> None:
    done = cpconsole("render", in_containers(tmp_path), "--containers")
    assert done.returncode == 0, done.stderr
    blocks = done.stdout.split("\n\n")
    assert len(blocks) == 3  # one container per node: the proxy shares prefill-a's
    decode = next(b for b in blocks if "on decode-a" in b)
    words = decode.replace("\\\n", " ").split()
    assert words[words.index("run") :][:5] == ["run", "--detach", "--name", "vllm-d", "--net=host"]
    assert "--shm-size=1g" in words and words[-3:] == [IMAGE, "sleep", "infinity"]
    devices = [words[i + 1] for i, w in enumerate(words) if w == "--device"]
    assert devices == [f"/dev/davinci{i}" for i in range(16)] + [
        "/dev/davinci_manager",
        "/dev/devmm_svm",
        "/dev/hisi_hdc",
    ]
    volumes = [words[i + 1] for i, w in enumerate(words) if w == "--volume"]
    assert "/usr/local/Ascend/driver/lib64/:/usr/local/Ascend/driver/lib64/" in volumes
    assert "/models/DeepSeek-V3.1_w8a8mix_mtp:/models/DeepSeek-V3.1_w8a8mix_mtp" in volumes  # the model's
    assert volumes[-1] == "/root/.cache:/root/.cache"  # the profile's own


def test_containers_are_created_checked_and_removed_on_each_node(tmp_path: Path, state: Path) -> None:
    profile = in_containers(tmp_path)
    missing = cpconsole("containers", profile, "check")
    assert missing.returncode == 1 and missing.stdout.count("No such object: vllm-") == 3
    assert "cpconsole containers PROFILE create" in missing.stdout

    made = cpconsole("containers", profile, "create")
    assert made.returncode == 0, made.stdout + made.stderr
    assert made.stdout.count(f"created from {IMAGE}") == 3
    # pulled first, as a step of its own on every node, its progress shown
    for node in NAMES:
        assert f"  pulled {IMAGE} on {node}: 3/3 layers\n" in made.stderr, made.stderr
    for line in ("running on 3/3 nodes", "every device mapped on 3/3 nodes", "host on 3/3 nodes", "at least 1g"):
        assert line in made.stdout, made.stdout
    again = cpconsole("containers", profile, "create", "--json")
    assert {a["what"] for a in json.loads(again.stdout)["actions"]} == {"already there"}

    # someone re-created decode-a's by hand: bridge network, no model, the default /dev/shm
    inspected = json.loads((state / "vllm-d.json").read_text())
    inspected["HostConfig"].update(NetworkMode="bridge", ShmSize=64 * 1024**2)
    inspected["HostConfig"]["Binds"] = [b for b in inspected["HostConfig"]["Binds"] if "models" not in b]
    (state / "vllm-d.json").write_text(json.dumps(inspected))
    wrong = cpconsole("containers", profile, "check", "--json")
    assert wrong.returncode == 1
    failed = {(c["check"], c["evidence"]) for c in json.loads(wrong.stdout)["checks"] if c["status"] == "FAIL"}
    assert failed == {
        ("container network", "vllm-d: bridge"),
        ("shared memory", "vllm-d: /dev/shm of 64 MiB"),
        ("mounts", "vllm-d lacks /models/DeepSeek-V3.1_w8a8mix_mtp"),
    }

    asked = cpconsole("containers", profile, "remove")  # no terminal to ask, no --yes
    assert asked.returncode == 1 and "nothing removed; add --yes to go ahead" in asked.stderr
    gone = cpconsole("containers", profile, "remove", "--yes")
    assert gone.returncode == 0 and gone.stdout.count(" removed\n") == 3
    assert not list(state.iterdir())
    assert (tmp_path / "decode-a-images.json").exists()  # the nodes keep the image, as docker does
    journal = cpconsole("journal", profile, "--json")
    verbs = [entry["verb"] for entry in json.loads(journal.stdout)]
    assert verbs == ["containers create", "containers create", "containers remove"]


async def test_a_container_a_process_runs_in_is_not_removed(tmp_path: Path, state: Path) -> None:
    plan = build_plan(load_profile_text(in_containers(tmp_path).read_text()))
    transports: dict[str, Transport] = {n.name: LocalTransport(n.name) for n in plan.nodes}
    try:
        await containers.create(plan, transports)
        outcomes = await containers.remove(plan, transports, running={"decode-0"})
    finally:
        for transport in transports.values():
            await transport.close()
    by_node = {o.node: o for o in outcomes}
    assert not by_node["decode-a"].done
    assert by_node["decode-a"].what == "decode-0 still running in it: cpconsole down first"
    assert by_node["prefill-a"].done


def test_nodes_that_pulled_different_images_get_no_container(
    tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the tag moved between two nodes' pulls: the deployment would run two builds
    for name, digest in (("registry", "a" * 64), ("moved", "b" * 64)):
        (tmp_path / f"{name}.json").write_text(json.dumps({IMAGE: {"digest": f"sha256:{digest}", "layers": 2}}))
    profile = in_containers(tmp_path, {"decode-a": tmp_path / "moved.json"})
    monkeypatch.setenv("DOCKER_STAND_IN_REGISTRY", str(tmp_path / "registry.json"))
    made = cpconsole("containers", profile, "create", "--json")
    assert made.returncode == 1
    why = {a["what"] for a in json.loads(made.stdout)["actions"]}
    assert why == {
        f"not created: the nodes pulled different images for {IMAGE}: decode-a sha256:bbbbbbbbbbbb, "
        "prefill-a sha256:aaaaaaaaaaaa, prefill-b sha256:aaaaaaaaaaaa"
    }
    assert not list(state.glob("vllm-*.json"))  # none created


def test_an_image_the_registry_lacks_fails_its_node_and_creates_nothing(
    tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = in_containers(tmp_path)
    (tmp_path / "registry.json").write_text("{}")
    monkeypatch.setenv("DOCKER_STAND_IN_REGISTRY", str(tmp_path / "registry.json"))
    made = cpconsole("containers", profile, "create", "--json")
    assert made.returncode == 1
    actions = json.loads(made.stdout)["actions"]
    assert all(f"manifest for {IMAGE} not found" in a["what"] for a in actions), actions
    assert not list(state.glob("vllm-*.json"))
