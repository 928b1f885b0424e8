"""Preflight against the simulated nodes: a clean bill of health, then one broken thing at a time
(DOWN link, unhealthy chip, missing chips, busy port, float16 model, unreachable node)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from cpconsole.core.plan import build_plan
from cpconsole.core.preflight import run_preflight
from cpconsole.core.profile import load_profile_text
from cpconsole.core.remote import LocalTransport, SSHTransport, Transport

from .simcluster import demo_text
from .sshd import Sshd, free_port


def node_env(text: str, node_ip: str, **env: str) -> str:
    extra = "".join(f"{k}: '{v}', " for k, v in env.items())
    return text.replace(f"env: {{CPCONSOLE_SIM_NODE: {node_ip},", f"env: {{{extra}CPCONSOLE_SIM_NODE: {node_ip},")


async def checks_of(
    text: str, model_path: str | None = None, transports: dict[str, Transport] | None = None
) -> dict[tuple[str, str], object]:
    plan = build_plan(load_profile_text(text))
    nodes = transports or {n.name: LocalTransport(n.name) for n in plan.nodes}
    return {(c.node, c.check): c for c in await run_preflight(plan, nodes, model_path=model_path, timeout=20)}


async def test_healthy_simulated_nodes_pass(tmp_path: Path) -> None:
    checks = await checks_of(demo_text(tmp_path))
    assert {c.status for c in checks.values()} == {"PASS"}  # type: ignore[attr-defined]
    assert checks[("decode-a", "NPU network")].evidence == "16/16 links UP"  # type: ignore[attr-defined]


async def test_each_broken_thing_is_named(tmp_path: Path) -> None:
    text = demo_text(tmp_path)
    text = node_env(
        text,
        "127.0.0.12",
        CPCONSOLE_SIM_LINK_DOWN="3,7",
        CPCONSOLE_SIM_NET_FAULT="9",
        CPCONSOLE_SIM_NPU_HEALTH="5=Alarm",
    )
    text = node_env(text, "127.0.0.13", CPCONSOLE_SIM_CHIPS="8")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.13", 8004))
        squatter.listen()
        checks = await checks_of(text)
    link = checks[("prefill-b", "NPU network")]
    assert (
        link.status == "FAIL"
        and link.evidence == "14/16 links UP; DOWN: chip 3, 7; net health: chip 3 Fault, chip 7 Fault, chip 9 Fault"
    )  # type: ignore[attr-defined]
    health = checks[("prefill-b", "chip health")]
    assert health.status == "FAIL" and health.evidence == "2/1 Alarm"  # type: ignore[attr-defined]
    chips = checks[("decode-a", "chips")]
    assert chips.status == "FAIL" and chips.evidence == "8 chips, profile says 16"  # type: ignore[attr-defined]
    ports = checks[("decode-a", "ports")]
    assert ports.status == "FAIL" and ports.evidence.startswith("8004 (decode-0 http) already in use")  # type: ignore[attr-defined]
    assert checks[("prefill-a", "ports")].status == "PASS"  # type: ignore[attr-defined]  # 8004 taken on .13 only


async def test_model_config_must_say_bfloat16(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"torch_dtype": "float16"}))
    checks = await checks_of(demo_text(tmp_path), model_path=str(model))
    bad = checks[("decode-a", "model")]
    assert bad.status == "FAIL" and "change torch_dtype from float16 to bfloat16" in bad.hint  # type: ignore[attr-defined]
    (model / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    good = await checks_of(demo_text(tmp_path), model_path=str(model))
    assert good[("decode-a", "model")].status == "PASS"  # type: ignore[attr-defined]
    missing = await checks_of(demo_text(tmp_path), model_path=str(tmp_path / "nowhere"))
    assert missing[("prefill-a", "model")].status == "FAIL"  # type: ignore[attr-defined]


async def test_an_unreachable_node_fails_alone(tmp_path: Path, sshd: Sshd) -> None:
    plan = build_plan(load_profile_text(demo_text(tmp_path)))
    transports: dict[str, Transport] = {n.name: LocalTransport(n.name) for n in plan.nodes}
    transports["decode-a"] = SSHTransport(sshd.node("127.0.0.15", port=free_port("127.0.0.15")), connect_timeout=2)
    checks = {(c.node, c.check): c for c in await run_preflight(plan, transports, model_path=None)}
    assert checks[("decode-a", "reachable")].status == "FAIL"
    assert [k for k in checks if k[0] == "decode-a"] == [("decode-a", "reachable")]
    assert checks[("prefill-a", "chips")].status == "PASS"
