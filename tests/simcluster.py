"""Start simulator processes the way the console will: from a profile's rendered plan, as
detached processes through the LocalTransport."""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from cpconsole.core.plan import LaunchPlan, build_plan
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport, ProcessHandle
from cpconsole.core.remote.launch import spawn_spec

from .conftest import PROFILES
from .loopback import Block
from .sshd import Sshd

DEMO = (PROFILES / "demo.yaml").read_text()


DEMO_NODES = {"prefill-a": "127.0.0.11", "prefill-b": "127.0.0.12", "decode-a": "127.0.0.13"}


def demo_text(
    tmp: Path,
    *,
    startup: str = "0.2",
    extra_env: dict[str, str] | None = None,
    block: Block | None = None,
    node_env: dict[str, dict[str, str]] | None = None,
) -> str:
    """The demo profile, fast, with its run and state directories under tmp and its nodes in a
    loopback block of their own (a fresh one unless given); node_env: more env of a node (by name,
    e.g. a CPCONSOLE_SIM_FAULT; its 127.0.0.1x addresses move with the block)."""
    env = {
        "CPCONSOLE_SIM_STARTUP_S": startup,
        "CPCONSOLE_SIM_BACKGROUND_RPS": "0",
        "VLLM_LOG_STATS_INTERVAL": "1",
        **(extra_env or {}),
    }
    text = DEMO.replace('    CPCONSOLE_SIM_STARTUP_S: "4"', "").replace('    CPCONSOLE_SIM_BACKGROUND_RPS: "0.5"', "")
    lines = "".join(f'    {k}: "{v}"\n' for k, v in env.items())
    text = text.replace("  env:\n    HCCL_BUFFSIZE", f"  run_dir: {tmp}/run\n  env:\n{lines}    HCCL_BUFFSIZE", 1)
    # the simulated nodes' state goes in the node env, which the node tools (npu-smi) see too
    for node, ip in DEMO_NODES.items():
        more = "".join(f", {k}: {v}" for k, v in (node_env or {}).get(node, {}).items())
        text = text.replace(
            f"env: {{CPCONSOLE_SIM_NODE: {ip}}}",
            f"env: {{CPCONSOLE_SIM_NODE: {ip}, CPCONSOLE_SIM_STATE: {tmp}/state{more}}}",
        )
    return (block or Block.fresh()).relocate(text)


@dataclass
class Cluster:
    plan: LaunchPlan
    node: LocalTransport = field(default_factory=lambda: LocalTransport("local"))
    handles: dict[str, ProcessHandle] = field(default_factory=dict)
    text: str = ""  # the profile it runs, when made from one

    async def start(self, name: str) -> ProcessHandle:
        handle = await self.node.spawn_detached(spawn_spec(self.plan, self.plan.process(name)))
        self.handles[name] = handle
        return handle

    def log(self, name: str) -> str:
        handle = self.handles[name]
        return Path(posixpath.join(handle.run_dir, "log")).read_text(errors="replace")

    def url(self, name: str) -> str:
        proc = self.plan.process(name)
        return f"http://{proc.address}:{proc.http_port}"

    async def wait_http(self, name: str, path: str = "/health", timeout: float = 15) -> float:
        """Seconds until the endpoint answers 200; fails with the process log if it never does."""
        started = time.monotonic()
        async with httpx.AsyncClient(trust_env=False, timeout=1) as client:
            while time.monotonic() - started < timeout:
                try:
                    if (await client.get(self.url(name) + path)).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"{name} never answered {path}:\n{self.log(name)[-3000:]}")

    async def wait_log(self, name: str, text: str, timeout: float = 30) -> None:
        """Until the process's log says `text` (a hang guard, not a speed bound)."""
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} never logged {text!r}:\n{self.log(name)[-3000:]}")
            await asyncio.sleep(0.05)

    @staticmethod
    async def wait_listening(address: str, port: int, timeout: float = 30) -> None:
        """Until something accepts connections on address:port."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, writer = await asyncio.open_connection(address, port)
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"nothing ever listened on {address}:{port}") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return

    async def wait_exit(self, name: str, timeout: float = 15) -> int | None:
        handle = self.handles[name]
        for _ in range(int(timeout / 0.05)):
            status = await self.node.status(handle)
            if status.state != "running":
                return status.exit_code
            await asyncio.sleep(0.05)
        raise AssertionError(f"{name} is still running:\n{self.log(name)[-2000:]}")

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.node.stop(h, grace=3) for h in self.handles.values()), return_exceptions=True)


def cluster(tmp: Path, **kwargs: object) -> Cluster:
    os.environ.pop("NO_COLOR", None)
    text = demo_text(tmp, **kwargs)  # type: ignore[arg-type]
    return Cluster(build_plan(load_profile_text(text)), text=text)


def over_ssh(text: str, sshd: Sshd, tmp: Path, nodes_dir: str) -> str:
    """A demo_text profile (made in the sshd's block) whose nodes are reached through the test
    sshd, as root: the venv's interpreter lives under /root, out of reach of the unprivileged test user."""
    assert f"host: {sshd.ips[0]}," in text, "make the demo text in the sshd's block: demo_text(…, block=sshd.block)"
    settings = (
        f"user: root, port: {sshd.port}, identity_file: {sshd.client_key}, "
        f"known_hosts: {sshd.known_hosts}, config_file: {sshd.empty_config}"
    )
    return ssh_nodes(text, tmp, nodes_dir, settings)


def ssh_nodes(text: str, tmp: Path, nodes_dir: str, ssh: str) -> str:
    """A demo_text profile whose nodes are reached by SSH with these `ssh:` settings (YAML flow
    keys), running this interpreter by its path, their run and state directories in `nodes_dir`."""
    python = sys.executable
    text = text.replace(f"run_dir: {tmp}/run", f"run_dir: {nodes_dir}/run").replace(
        "  transport: local", "  transport: ssh"
    )
    text = text.replace(
        "vllm_command: [python3, -m, cpconsole.sim, vllm]", f"vllm_command: [{python}, -m, cpconsole.sim, vllm]"
    )
    text = text.replace("command: [python3, -m, cpconsole.proxy]", f"command: [{python}, -m, cpconsole.proxy]")
    for tool in ("npu-smi", "hccn_tool", "hccn.conf", "python"):  # the login PATH has no venv
        text = text.replace(f"[cpconsole-sim, {tool}]", f"[{python}, -m, cpconsole.sim, {tool}]")
    text = text.replace("  env:\n", f"  ssh: {{{ssh}}}\n  env:\n", 1)
    return text.replace(f"CPCONSOLE_SIM_STATE: {tmp}/state", f"CPCONSOLE_SIM_STATE: {nodes_dir}/state")


def one_p_two_d(text: str) -> str:
    """A demo_text profile with a second decode instance, `decode2` on node decode-b (the next
    address of the block): the smallest layout where one decode serves while the other restarts."""
    node = next(line for line in text.splitlines() if line.startswith("  decode-a: {host: "))
    address = node.split("host: ", 1)[1].split(",", 1)[0]
    other = address.rsplit(".", 1)[0] + ".14"
    text = text.replace(node, node + "\n" + node.replace("decode-a", "decode-b").replace(address, other), 1)
    start = text.index("\n  decode:\n")
    block = text[start : text.index("\nproxy:", start)]
    second = (
        block.replace("\n  decode:\n", "\n  decode2:\n", 1)
        .replace("nodes: [decode-a]", "nodes: [decode-b]")
        .replace('engine_ids: ["3"]', 'engine_ids: ["4"]')
    )
    return text.replace(block, block + second, 1)


def processes_under(pid: int, word: str) -> list[psutil.Process]:
    """The processes under `pid` whose command line holds `word`; one that ends while they are read
    (the log keeper's sleep comes and goes beside every server) is left out."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            if word in " ".join(child.cmdline()) or child.name() == word:
                found.append(child)
    return found
