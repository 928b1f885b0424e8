"""The deployment as the CLI and console see it stays true after faults: a killed wrapper, a lost
manifest; `status` answers monitoring with an exit code that is never 0 for a broken or stopped
deployment. Real simulated servers on loopback, through the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from cpconsole.core.orchestrate import Orchestrator
from cpconsole.core.orchestrate.model import ProcessView
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile, load_profile_text
from cpconsole.core.remote import LocalTransport
from cpconsole.core.remote.launch import run_dir
from cpconsole.core.session import Session
from cpconsole.core.telemetry.alerts import Alert
from cpconsole.exit_codes import EXIT_FAILED, EXIT_NOT_READY, EXIT_OK, EXIT_UNREACHABLE, exit_code_for
from cpconsole.ui.app import ConsoleApp
from cpconsole.ui.screens.board import last_action_text

from .conftest import write_profile
from .simcluster import demo_text
from .test_cli import cpconsole
from .test_ui import wait_for


def processes(profile: Path) -> dict[str, dict[str, object]]:
    done = cpconsole("status", profile, "--json")
    return {p["name"]: p for p in json.loads(done.stdout)["processes"]}


def group_of(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.process_iter() if _pgid(p.pid) == pid and p.status() != psutil.STATUS_ZOMBIE]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@pytest.fixture
def profile(tmp_path: Path) -> Iterator[Path]:
    path = write_profile(tmp_path, demo_text(tmp_path))
    yield path
    cpconsole("down", path)


def test_a_killed_wrapper_leaves_nothing_invisible(profile: Path) -> None:
    assert cpconsole("up", profile, "-p", "decode-0").returncode == 0
    wrapper = int(processes(profile)["decode-0"]["pid"])  # type: ignore[call-overload]
    servers = [p for p in group_of(wrapper) if p.pid != wrapper]
    assert servers
    os.kill(wrapper, signal.SIGKILL)
    psutil.Process(wrapper).wait(10) if psutil.pid_exists(wrapper) else None

    seen = processes(profile)["decode-0"]
    assert seen["state"] == "ready", seen  # the server runs on, and answers: it is shown as it is
    assert f"wrapper (pid {wrapper}) is gone" in str(seen["reason"])

    stopped = cpconsole("down", profile)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not [p for p in servers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert processes(profile)["decode-0"]["state"] == "stopped"
    assert cpconsole("up", profile, "-p", "decode-0").returncode == 0  # its port is free again


@pytest.mark.parametrize("damage", ["deleted", "empty", "garbage"])
async def test_a_lost_manifest_is_adopted_by_the_pid_file(tmp_path: Path, damage: str) -> None:
    profile = write_profile(tmp_path, demo_text(tmp_path))
    plan = build_plan(load_profile_text(profile.read_text()))
    transports = {n.name: LocalTransport(n.name) for n in plan.nodes}
    first = Orchestrator(plan, transports)
    try:
        assert await first.up(["decode-0"])
        manifest = Path(run_dir(plan, plan.process("decode-0")), "manifest.json")
        if damage == "deleted":
            manifest.unlink()
        else:
            manifest.write_text("" if damage == "empty" else "{not json")
        second = Orchestrator(plan, transports)
        await second.adopt()
        view = second.views["decode-0"]
        assert view.state in ("starting", "ready") and view.pid == first.handles["decode-0"].pid
        assert "adopted by its pid file" in view.reason
        assert await second.down()
        assert second.views["decode-0"].state == "stopped"
        await second.close()
    finally:
        await first.down()
        await first.close()


def view(state: str, **more: object) -> ProcessView:
    return ProcessView("p", state, **more)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("views", "alerts", "code"),
    [
        ([view("ready"), view("ready")], [], EXIT_OK),
        ([view("ready"), view("drifted", health_ms=3.0)], [], EXIT_OK),  # serving, from an older profile
        ([view("ready"), view("exited", exit_code=-9)], [], EXIT_FAILED),
        ([view("ready"), view("failed")], [], EXIT_FAILED),
        ([view("ready"), view("stalled")], [], EXIT_FAILED),
        ([view("ready"), view("exited", leftovers=2)], [], EXIT_FAILED),
        ([view("ready")], [Alert("health:n", "critical", "n", "chip 3 Alarm")], EXIT_FAILED),
        ([view("ready")], [Alert("hbm:n", "warning", "n", "HBM 96%")], EXIT_OK),
        ([view("ready"), view("stopped")], [], EXIT_NOT_READY),
        ([view("planned"), view("planned")], [], EXIT_NOT_READY),
        ([view("ready"), view("starting")], [], EXIT_NOT_READY),
        ([view("failed"), view("unknown")], [], EXIT_UNREACHABLE),
    ],
)
def test_status_exit_codes(views: list[ProcessView], alerts: list[Alert], code: int) -> None:
    assert exit_code_for(views, alerts) == code


def test_status_of_a_stopped_deployment_is_not_ok_and_a_stop_is_no_failure(profile: Path) -> None:
    assert cpconsole("status", profile).returncode == EXIT_NOT_READY  # never started
    assert cpconsole("up", profile).returncode == 0
    assert cpconsole("status", profile).returncode == EXIT_OK
    wrapper = int(processes(profile)["decode-0"]["pid"])  # type: ignore[call-overload]
    for member in group_of(wrapper):
        member.kill()
    broken = cpconsole("status", profile)
    assert broken.returncode == EXIT_FAILED, broken.stdout
    assert cpconsole("down", profile).returncode == 0
    after = cpconsole("status", profile)
    assert after.returncode == EXIT_NOT_READY, after.stdout
    assert "failed" not in after.stdout and "lost" not in after.stdout


def test_profiles_with_one_name_never_touch_each_others_processes(profile: Path, tmp_path: Path) -> None:
    assert cpconsole("up", profile, "-p", "decode-0").returncode == 0
    running = processes(profile)["decode-0"]
    # a copy with the same name on other nodes: another deployment, with run directories of its own
    decode_host = build_plan(load_profile(profile)).node("decode-a").host
    elsewhere = decode_host.rsplit(".", 1)[0] + ".14"
    other = write_profile(
        tmp_path, profile.read_text().replace(f"host: {decode_host}", f"host: {elsewhere}"), "other.yaml"
    )
    assert processes(other)["decode-0"]["state"] == "planned"
    assert cpconsole("down", other).returncode == 0
    assert processes(profile)["decode-0"]["pid"] == running["pid"]
    assert processes(profile)["decode-0"]["state"] == "ready"


def test_down_stops_a_drifted_process_but_spares_another_profiles_unless_forced(profile: Path, tmp_path: Path) -> None:
    assert cpconsole("up", profile, "-p", "decode-0").returncode == 0
    edited = write_profile(
        tmp_path, profile.read_text().replace("HCCL_BUFFSIZE", "EXTRA_KNOB: '1'\n    HCCL_BUFFSIZE", 1), "edited.yaml"
    )
    assert processes(edited)["decode-0"]["state"] == "drifted"  # this profile, edited since: down stops it
    assert cpconsole("down", edited).returncode == 0
    assert processes(profile)["decode-0"]["state"] == "stopped"

    assert cpconsole("up", profile, "-p", "decode-0").returncode == 0
    plan = build_plan(load_profile_text(profile.read_text()))
    manifest = Path(run_dir(plan, plan.process("decode-0")), "manifest.json")
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "run_key": "someone-elses-0badc0de"}))  # another profile's process
    spared = cpconsole("down", profile)
    assert spared.returncode == 1 and "started by another profile (someone-elses-0badc0de)" in spared.stdout
    assert processes(profile)["decode-0"]["pid"] == record["pid"]
    assert cpconsole("down", profile, "--force").returncode == 0
    assert processes(profile)["decode-0"]["state"] == "stopped"


def test_an_edit_of_the_instances_is_the_same_deployment_and_loses_nothing(profile: Path, tmp_path: Path) -> None:
    """The instance list is not the deployment's identity (its name and nodes are): a process of an
    instance the edited profile renamed or removed is found, shown as removed and stopped by `down`."""
    assert cpconsole("up", profile, "-p", "decode-0", "-p", "prefill-0", "-p", "prefill-1").returncode == 0
    before = processes(profile)
    renamed = write_profile(tmp_path, profile.read_text().replace("\n  decode:\n", "\n  decode2:\n", 1), "e.yaml")
    assert build_plan(load_profile(renamed)).run_key == build_plan(load_profile(profile)).run_key
    now = processes(renamed)
    assert now["prefill-0"]["pid"] == before["prefill-0"]["pid"] and now["prefill-0"]["state"] == "ready"
    assert now["decode2-0"]["state"] == "planned"
    report = json.loads(cpconsole("status", renamed, "--json").stdout)
    assert [(r["name"], r["pid"]) for r in report["removed"]] == [("decode-0", before["decode-0"]["pid"])]
    assert "removed from the profile, still running (`down` stops them):\n  decode-0 on decode-a" in (
        cpconsole("status", renamed).stdout
    )
    down = cpconsole("down", renamed)
    assert down.returncode == 0, down.stdout + down.stderr
    gone = int(str(before["decode-0"]["pid"]))
    assert not psutil.pid_exists(gone) or psutil.Process(gone).status() == psutil.STATUS_ZOMBIE
    assert json.loads(cpconsole("status", renamed, "--json").stdout)["removed"] == []
    assert processes(profile)["decode-0"]["state"] == "stopped"  # the original profile sees it stopped


def test_a_relative_run_dir_is_refused(tmp_path: Path) -> None:
    text = demo_text(tmp_path).replace(f"run_dir: {tmp_path}/run", "run_dir: relative/run")
    done = cpconsole("validate", write_profile(tmp_path, text))
    assert done.returncode == 2 and "run_dir must be absolute or start with ~/" in done.stderr


async def test_a_console_sees_within_seconds_what_another_operator_started(profile: Path) -> None:
    """A console open while a script (or another console) starts a process shows it, and who
    started it, without a key being pressed."""
    async with Session(build_plan(load_profile(profile))) as console:
        await console.start()
        assert console.view().processes["decode-0"].state == "planned"
        started = await asyncio.to_thread(cpconsole, "up", profile, "-p", "decode-0")
        assert started.returncode == 0, started.stdout + started.stderr
        for _ in range(600):  # a hang guard: the console looks every 5 s
            seen = console.view().processes["decode-0"]
            if seen.state in ("starting", "ready"):
                break
            await asyncio.sleep(0.1)
        assert seen.state in ("starting", "ready"), seen
        assert seen.reason.startswith("started by ") and "@" in seen.reason
        assert console.view().processes["prefill-0"].state == "planned"  # what nobody started stays as it was
        for _ in range(600):  # and the journal says who did it, on the board's roll-up
            action = console.last_action
            if action is not None and action.verb == "up":
                break
            await asyncio.sleep(0.1)
        assert action is not None and (action.via, action.targets, action.result) == ("cli", ("decode-0",), "ok")
        assert last_action_text(action, console.now()).startswith(f"up by {action.who} (cli): ok, ")


async def test_two_consoles_and_a_script_see_what_each_other_did_and_who(profile: Path) -> None:
    """One console starts the deployment, a second (read-only) shows it ready and who did it; a
    script stops it, and both consoles show that too — no key pressed in either."""
    plan = build_plan(load_profile(profile))
    acting = ConsoleApp(Session(plan, via="console"))
    watching = ConsoleApp(Session(plan, via="console", read_only=True))

    def rollup(app: ConsoleApp) -> str:
        return str(app.board.query_one("#rollup", Static).content)

    def states(app: ConsoleApp) -> set[str]:
        return {v.state for v in app.session.view().processes.values()}

    async with acting.run_test(size=(150, 40)) as one, watching.run_test(size=(150, 40)) as two:
        await wait_for(two, lambda: watching.session.notifier is not None)  # it watches
        assert await acting.session.up()
        who = acting.session.orchestrator.operator
        await wait_for(two, lambda: states(watching) == {"ready"}, shown=lambda: states(watching))
        await wait_for(two, lambda: f"up by {who} (console): ok" in rollup(watching), shown=lambda: rollup(watching))
        stopped = await asyncio.to_thread(cpconsole, "down", profile)
        assert stopped.returncode == 0, stopped.stderr
        for app, pilot in ((watching, two), (acting, one)):
            await stopped_by_the_script(app, pilot, who)


async def stopped_by_the_script(app: ConsoleApp, pilot: Pilot[int], who: str) -> None:
    def rollup() -> str:
        return str(app.board.query_one("#rollup", Static).content)

    await wait_for(pilot, lambda: f"down by {who} (cli): ok" in rollup(), shown=rollup)
    await wait_for(pilot, lambda: "ready" not in {v.state for v in app.session.view().processes.values()})
