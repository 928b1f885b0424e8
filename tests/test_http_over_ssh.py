"""A jump host that reaches the nodes by SSH only — through a bastion, their ports out of its reach,
in network namespaces of the test's own: `up` waits for readiness, `status` reads health and
metrics, `smoke` sends its requests, all through the nodes' SSH connections (`http: auto`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from cpconsole.core.remote.http_routes import answers

from .netns import behind_bastion
from .simcluster import demo_text, ssh_nodes
from .test_orchestrate import cpconsole

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and iproute2"
)


def test_through_a_bastion_the_deployment_comes_up_and_is_watched(tmp_path: Path, nodes_dir: str) -> None:
    with behind_bastion() as net:
        prefill = net.nodes.ip(11)
        assert not asyncio.run(answers(prefill, 8004)), "the servers' ports must be out of this machine's reach"
        profile = tmp_path / "demo.yaml"
        profile.write_text(
            ssh_nodes(demo_text(tmp_path, block=net.nodes), tmp_path, nodes_dir, f"config_file: {net.ssh_config}")
        )
        try:
            up = cpconsole("up", profile, timeout=240)
            assert up.returncode == 0, up.stdout + up.stderr
            status = cpconsole("status", profile, "--json", timeout=120)
            report = json.loads(status.stdout)
            assert {p["name"]: p["state"] for p in report["processes"]} == dict.fromkeys(
                ("prefill-0", "prefill-1", "decode-0", "proxy"), "ready"
            ), status.stdout
            # prefill-b runs the headless rank, which serves no HTTP: its route was never needed
            assert report["http"] == {"prefill-a": "ssh", "prefill-b": "auto", "decode-a": "ssh"}
            smoke = cpconsole("smoke", profile, timeout=120)
            assert smoke.returncode == 0, smoke.stdout + smoke.stderr
            told = cpconsole("status", profile, timeout=120)
            assert "HTTP through SSH to prefill-a, decode-a (their ports are not reached from here)" in told.stdout
        finally:
            down = cpconsole("down", profile, timeout=120)
            assert down.returncode == 0, down.stdout + down.stderr
