"""Diagnosis end to end on the demo: the simulator replays a real failure line (CPCONSOLE_SIM_FAULT)
on a chosen node and rank, while serving; `status` names it with its place and hint — a failure that
recurs as an alert, a fatal one as the process's cause."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cpconsole.core.session import Session
from cpconsole.ui.app import ConsoleApp

from .simcluster import demo_text
from .test_orchestrate import cpconsole
from .test_ui import column, session_over, table_of, wait_for


def status(profile: Path) -> dict[str, Any]:
    done = cpconsole("status", profile, "--json")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def until(profile: Path, found: Any, tries: int = 60) -> dict[str, Any]:
    """Ask `status` until the report shows what `found` looks for (each ask is a whole round trip to
    the nodes; a hang guard, not a speed bound)."""
    for _ in range(tries):
        report = status(profile)
        if found(report):
            return report
    raise AssertionError(f"never shown: {json.dumps(report, indent=1)[:3000]}")


def test_kv_transfers_failing_while_serving_are_an_alert_with_place_and_hint(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path, node_env={"decode-a": {"CPCONSOLE_SIM_FAULT": "kv_transfer_failed@0.2"}}))
    try:
        assert cpconsole("up", profile).returncode == 0  # the decode serves on: the failures recur
        report = until(profile, lambda r: any(a["kind"] == "kv_transfer_failed" for a in r["alerts"]))
        alert = next(a for a in report["alerts"] if a["kind"] == "kv_transfer_failed")
        assert alert["source"] == "decode-0" and alert["place"] == "decode-a" and alert["severity"] == "warning"
        assert "Mooncake transfer failed for request" in alert["evidence"]
        assert "ASCEND_TRANSFER_TIMEOUT" in alert["hint"] and "use_ascend_direct" in alert["hint"]
        assert {v["state"] for v in report["processes"]} == {"ready"}
        text = cpconsole("status", profile).stdout
        assert "a KV transfer between prefill and decode failed" in text and "where: decode-a" in text
    finally:
        cpconsole("down", profile)


def test_a_rank_stuck_mid_serving_fails_its_process_with_node_rank_and_chip(tmp_path: Path) -> None:
    """The headless prefill rank (node-rank 1) stops: global rank 20 of TP16 × PCP2 is its 5th chip."""
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path, node_env={"prefill-b": {"CPCONSOLE_SIM_FAULT": "hccl_rank_stuck@1#20"}}))
    try:
        cpconsole("up", profile)  # whether up saw it or not, the process dies of it
        report = until(profile, lambda r: r["processes"][1]["cause"] is not None)
        cause = report["processes"][1]["cause"]
        assert report["processes"][1]["name"] == "prefill-1" and report["processes"][1]["state"] == "failed"
        assert cause["kind"] == "hccl_rank_stuck" and cause["place"] == "prefill-b · rank 20 · NPU 4"
        assert "[rank20]: EI0006" in cause["evidence"] and "npu-smi info" in cause["hint"]
    finally:
        cpconsole("down", profile)


async def test_the_console_shows_a_failure_while_serving_with_where_and_what_to_do(tmp_path: Path) -> None:
    # the decode's KV transfers stop reaching the prefill's node
    fault = {"CPCONSOLE_SIM_FAULT": "kv_connect_timeout@0.2", "CPCONSOLE_SIM_FAULT_PEER": "127.0.0.11"}
    async for session in session_over(demo_text(tmp_path, node_env={"decode-a": fault})):
        app = ConsoleApp(session, refresh_s=0.2)

        def raised(watched: Session = session) -> bool:
            return any(a.kind == "kv_connect_timeout" for a in watched.alerts)

        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("u", "s")  # start now, skipping the preflight offered first
            await wait_for(pilot, raised)
            await pilot.press("8")
            shown = "\n".join(column(table_of(app.screen, "#alerts-table"), 3))
            assert "the KV transfer could not connect to its peer" in shown
            assert "where decode-a · peer prefill-a (" in shown  # the line's address, named by its node
            assert "ASCEND_CONNECT_TIMEOUT" in shown and "Failed to connect to target" in shown
            await pilot.press("1", "q", "enter")
