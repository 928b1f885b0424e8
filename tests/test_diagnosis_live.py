"""Diagnosis end to end on the demo: the simulator replays a real failure line (CPCONSOLE_SIM_FAULT)
on a chosen node and rank, while serving; `status` names it with its place and hint — a failure that
recurs as an alert, a fatal one as the process's cause."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.widgets import Static

from cpconsole.core.diagnosis import explain
from cpconsole.core.session import Session
from cpconsole.ui.app import ConsoleApp

from .frozen import frozen_session
from .simcluster import demo_text
from .test_orchestrate import cpconsole
from .test_ui import column, plain, session_over, table_of, wait_for


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
        assert "ASCEND_TRANSFER_TIMEOUT" in alert["hint"] and "use_ascend_direct" not in alert["hint"]  # read no more
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
        # the rank map: the failed rank, where it is in the layout, its chip's NPU IP (hccn_tool)
        done = cpconsole("ranks", profile, "prefill", "--json")
        assert done.returncode == 1, done.stderr  # a failed rank
        ranks = {r["rank"]: r for r in json.loads(done.stdout)}
        assert len(ranks) == 32 and {r["instance"] for r in ranks.values()} == {"prefill"}
        stuck = ranks[20]
        assert (stuck["node"], stuck["device"], stuck["tp"], stuck["pcp"], stuck["dcp_group"]) == (
            "prefill-b",
            4,
            4,
            1,
            0,
        )
        assert stuck["state"] == "failed" and stuck["note"].startswith("a peer rank stopped sending")
        assert stuck["kv_port"] == ranks[16]["kv_port"] + 4 and stuck["npu_ip"]
        assert ranks[21]["state"] == "down" and ranks[21]["note"].startswith("its process:")
        assert {ranks[n]["node"] for n in range(16)} == {"prefill-a"}
        text = cpconsole("ranks", profile).stdout
        assert "prefill (32 ranks)" in text and "decode (16 ranks)" in text and "a peer rank stopped" in text
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


async def test_the_rank_map_shows_a_failed_link_at_both_ends() -> None:
    """From a process's details, `k` opens its instance's ranks; a transport error names its rank
    and its peer's, and both rows say so."""
    session = frozen_session()
    plan = session.plan
    line = "[rank3]: EI0009: [PID: 2] Transport init error. Reason: [Create][DestLink]Create Dest error! createLink para:rank[3]-localUserrank[3]-localIpAddr[127.0.0.11], dst_rank[19]-remoteUserrank[19]-remote_ip_addr[127.0.0.12]"
    cause = explain([line], plan.process("prefill-0"), plan)
    assert cause is not None
    views = session.orchestrator.views
    views["prefill-0"] = replace(views["prefill-0"], state="failed", cause=cause, reason=cause.summary)
    app = ConsoleApp(session, live=False)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.press("enter", "k")  # the first row (prefill-0): details, then its instance's ranks
        shown = plain(app.screen.query_one("#ranks-table", Static).content)
        assert "prefill (32 ranks)" in shown and "decode (" not in shown
        rows = {row.split()[0]: row for row in shown.splitlines() if row.split() and row.split()[0].isdigit()}
        assert "failed" in rows["3"] and "HCCL could not build a link to a peer rank" in rows["3"]
        assert "prefill-b (127.0.0.12)" in rows["3"]
        assert "failed" in rows["19"] and "prefill-a rank 3" in rows["19"]  # the other end
        assert "down" in rows["4"] and "its process:" in rows["4"]
        await pilot.press("escape", "1", "q", "enter")
