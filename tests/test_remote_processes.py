"""Detached processes through both transports: start, status, stop, exit codes, adoption,
the pid-reuse guard, files, and containers — against a real sshd and the local machine."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import posixpath
import shlex
import signal
from pathlib import Path

import pytest

from cpconsole.core.remote import AlreadyRunning, ShellTransport, SpawnSpec
from cpconsole.core.remote.manifest import Manifest
from cpconsole.core.remote.types import ProcessHandle

from .standins import install_docker_stand_in

PY = "/usr/bin/python3"  # readable by the /bin/sh login user, unlike a venv under /root


def spec(run_dir: str, body: str, name: str = "job") -> SpawnSpec:
    return SpawnSpec(run_dir, f"#!/bin/sh\n{body}\n", Manifest(name, profile="t", digest="d" * 64))


async def wait_state(node: ShellTransport, handle: ProcessHandle, state: str, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if (await node.status(handle)).state == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.name} never became {state}")


def run_dir_for(node: ShellTransport, nodes_dir: str, name: str = "job") -> str:
    return posixpath.join(nodes_dir, node.node, name)


async def test_run_returns_bytes_and_survives_invalid_utf8(transport: ShellTransport) -> None:
    result = await transport.run("printf 'a\\377b\\n'; printf err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"a\xffb\n", b"err")
    again = await transport.run(["echo", "still here"])
    assert again.stdout == b"still here\n"


async def test_write_and_read_file(transport: ShellTransport, nodes_dir: str) -> None:
    path = posixpath.join(nodes_dir, "deep", "dir", "file with space")
    await transport.write_file(path, b"\x00\xffdata", mode=0o600)
    assert await transport.read_file(path) == b"\x00\xffdata"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


async def test_spawn_status_and_exit_code(transport: ShellTransport, nodes_dir: str) -> None:
    run_dir = run_dir_for(transport, nodes_dir)
    handle = await transport.spawn_detached(spec(run_dir, "echo started; sleep 0.3; exit 7"))
    assert (await transport.status(handle)).state == "running"
    await wait_state(transport, handle, "exited")
    status = await transport.status(handle)
    assert (status.state, status.exit_code) == ("exited", 7)
    assert Path(run_dir, "log").read_text() == "started\n"
    # what the node wrote (the launch facts, then the pid fields by the spawn script) reads back whole
    written = Manifest.decode(Path(run_dir, "manifest.json").read_bytes())
    assert written == Manifest("job", profile="t", digest="d" * 64).with_pid(
        handle.pid, handle.start_ticks, handle.boot_id
    )
    assert written.handle(handle.node, run_dir, container_cli=("docker",), container_pidfile=None) == handle
    assert Path(run_dir, "launch.sh").read_text().startswith("#!/bin/sh\n")


async def test_stop_kills_the_whole_group_and_records_the_signal(transport: ShellTransport, nodes_dir: str) -> None:
    run_dir = run_dir_for(transport, nodes_dir)
    handle = await transport.spawn_detached(spec(run_dir, "sleep 60 & sleep 60 & echo $! > child; wait"))
    for _ in range(100):
        if Path(run_dir, "child").exists():
            break
        await asyncio.sleep(0.02)
    child = int(Path(run_dir, "child").read_text())
    status = await transport.stop(handle, grace=5)
    assert (status.state, status.exit_code) == ("exited", -15)  # SIGTERM, recorded by the wrapper as 128 + 15
    await asyncio.sleep(0.1)
    assert not alive(child)


async def test_stop_escalates_to_kill_after_the_grace_period(transport: ShellTransport, nodes_dir: str) -> None:
    run_dir = run_dir_for(transport, nodes_dir)
    handle = await transport.spawn_detached(spec(run_dir, "exec " + shlex.join([PY, "-c", IGNORE_TERM])))
    for _ in range(100):
        if "ready" in Path(run_dir, "log").read_text():
            break
        await asyncio.sleep(0.02)
    status = await transport.stop(handle, grace=0.5)
    assert status.state == "exited"
    assert status.exit_code in (-9, None)  # the wrapper may die with its group before recording


IGNORE_TERM = "import signal,time;signal.signal(signal.SIGTERM,signal.SIG_IGN);print('ready',flush=True);time.sleep(60)"


async def test_second_start_is_refused_while_running(transport: ShellTransport, nodes_dir: str) -> None:
    run_dir = run_dir_for(transport, nodes_dir)
    handle = await transport.spawn_detached(spec(run_dir, "sleep 30"))
    with pytest.raises(AlreadyRunning, match=f"job is still running as pid {handle.pid}"):
        await transport.spawn_detached(spec(run_dir, "sleep 30"))
    await transport.stop(handle, grace=5)
    again = await transport.spawn_detached(spec(run_dir, "echo second"))
    assert again.pid != handle.pid
    assert (await transport.status(handle)).state == "gone"  # the run directory moved on
    await wait_state(transport, again, "exited")
    assert Path(run_dir, "log.1").exists()  # the previous log is kept once


async def test_recycled_pid_is_never_signalled(transport: ShellTransport, nodes_dir: str) -> None:
    run_dir = run_dir_for(transport, nodes_dir)
    handle = await transport.spawn_detached(spec(run_dir, "sleep 30"))
    impostor = ProcessHandle(handle.node, handle.name, run_dir, handle.pid, handle.start_ticks + 1, handle.boot_id)
    assert await transport.signal(impostor, "KILL") == "recycled"
    assert (await transport.status(impostor)).state == "gone"
    assert (await transport.status(handle)).state == "running"
    other_boot = ProcessHandle(handle.node, handle.name, run_dir, handle.pid, handle.start_ticks, "not-this-boot")
    assert await transport.signal(other_boot, "KILL") == "rebooted"
    assert (await transport.status(handle)).state == "running"
    await transport.stop(handle, grace=5)


async def test_process_survives_the_console_and_is_found_by_its_manifest(
    transport: ShellTransport, nodes_dir: str
) -> None:
    run_dir = run_dir_for(transport, nodes_dir)
    handle = await transport.spawn_detached(spec(run_dir, "sleep 30"))
    await transport.close()  # every connection goes
    await asyncio.sleep(0.3)
    found = await transport.find(run_dir)  # a fresh connection
    assert found == handle
    assert (await transport.status(found)).state == "running"
    await transport.stop(found, grace=5)
    assert await transport.find(posixpath.join(nodes_dir, "nothing-here")) is None


async def test_container_processes_run_through_docker_exec(transport: ShellTransport, nodes_dir: str) -> None:
    # No docker engine exists on these machines: a `docker` stand-in on PATH runs the exec'd
    # command locally with the --env values, which is what `docker exec` does inside a container.
    bin_dir = Path(nodes_dir, "bin")
    bin_dir.mkdir()
    install_docker_stand_in(bin_dir)
    run_dir = run_dir_for(transport, nodes_dir)
    # in the container the process starts where --workdir says (docker exec never takes the client's cwd)
    script = (
        f"export PATH={shlex.quote(str(bin_dir))}:$PATH DOCKER_STAND_IN_LOG=docker-container\n"
        f"exec docker exec --env 'GREETING=hello world' --workdir {shlex.quote(run_dir)} ctr "
        "sh -c 'echo \"$GREETING\" > out; exit 4'"
    )
    handle = await transport.spawn_detached(spec(run_dir, script))
    await wait_state(transport, handle, "exited")
    assert (await transport.status(handle)).exit_code == 4
    assert Path(run_dir, "out").read_text() == "hello world\n"
    assert Path(run_dir, "docker-container").read_text() == "ctr\n"


def alive(pid: int) -> bool:
    """A live process, not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_run_directories_under_the_login_home(transport: ShellTransport) -> None:
    """The default run_dir starts with ~: it must mean the login user's home everywhere."""
    base = f"~/cpconsole-test-{os.getpid()}-{id(transport)}"
    try:
        handle = await transport.spawn_detached(spec(f"{base}/job", "sleep 30"))
        found = await transport.find(f"{base}/job")
        assert found == handle and (await transport.status(found)).state == "running"
        home = (await transport.run('printf %s "$HOME"')).text()
        assert found.run_dir == f"{base}/job" and Path(home, base[2:], "job", "log").exists()
        assert (await transport.stop(found, grace=5)).state == "exited"
    finally:
        await transport.run('rm -rf "$HOME"/' + base[2:])


async def test_local_status_reads_what_the_status_script_prints(tmp_path: Path) -> None:
    """LocalTransport answers status in-process; it must see exactly what the node script sees."""
    from cpconsole.core.remote import LocalTransport
    from cpconsole.core.remote.local import status_fields
    from cpconsole.core.remote.scripts import parse_status, status

    node = LocalTransport("local")

    async def by_script(run_dir: str) -> dict[str, str]:
        return parse_status((await node.run(status(run_dir))).text())

    run_dir = str(tmp_path / "job")
    assert status_fields(run_dir) == await by_script(run_dir) == {"missing": ""}
    handle = await node.spawn_detached(spec(run_dir, "sleep 0.5; exit 4"))
    running, scripted = status_fields(run_dir), await by_script(run_dir)

    def steady(fields: dict[str, str]) -> dict[str, str]:  # R or S is a moment's state: the rest is not
        return {**fields, "proc": fields["proc"].split(" ", 1)[1]}

    assert running["proc"][:2] in ("S ", "R ") and scripted["proc"][:2] in ("S ", "R ")
    assert steady(running) == steady(scripted)
    await wait_state(node, handle, "exited")
    assert status_fields(run_dir) == await by_script(run_dir)
    assert status_fields(run_dir)["exitcode"] == "4"
    assert status_fields(run_dir).get("proc", "Z").startswith("Z")  # gone, or a zombie not yet reaped
    await node.close()


async def test_stop_also_ends_what_the_leader_left_in_its_group(transport: ShellTransport, nodes_dir: str) -> None:
    """vLLM's resource tracker ignores SIGTERM and outlives the server: stop must not leave it."""
    run_dir = run_dir_for(transport, nodes_dir, "stubborn")
    ignoring = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('ignoring', 'w'); time.sleep(60)"
    )
    handle = await transport.spawn_detached(spec(run_dir, f'{PY} -c "{ignoring}" &\nsleep 60', "stubborn"))
    for _ in range(600):  # until SIGTERM is really ignored: a stop before would not test the group's stray
        if Path(run_dir, "ignoring").exists():
            break
        await asyncio.sleep(0.05)
    status = await transport.stop(handle, grace=1.5)
    assert status.state == "exited"
    # nothing of the group lives on (zombies aside: this sandbox's PID 1 does not reap)
    assert status.settled and (await transport.status(handle)).leftovers == 0


@pytest.mark.parametrize("ignores_term", [False, True], ids=["stops-on-term", "ignores-term"])
async def test_stop_reaches_a_process_in_its_container(tmp_path: Path, ignores_term: bool) -> None:
    # docker exec passes no signal on: signalling the client's group (what stop did) ended the
    # client and left the process running in the container. The stand-in behaves the same way.
    from cpconsole.core.plan import build_plan
    from cpconsole.core.profile import load_profile_data
    from cpconsole.core.remote import LocalTransport
    from cpconsole.core.remote.launch import run_dir, spawn_spec

    docker = install_docker_stand_in(tmp_path / "bin")  # the profile's tools.docker: not on PATH
    trap = "trap '' TERM" if ignores_term else "trap 'echo stopped by TERM; exit 0' TERM"
    server = f"{trap}; echo ready; while :; do sleep 0.05; done"
    plan = build_plan(
        load_profile_data(
            {
                "name": f"in-container-{tmp_path.name}",
                "model": {"path": "/m", "check_path": False},
                "defaults": {
                    "transport": "local",
                    "container": "ctr",
                    "run_dir": str(tmp_path / "run"),
                    "vllm_command": ["sh", "-c", server, "server"],
                    "tools": {"docker": [str(docker)]},
                },
                "nodes": {"n1": {"host": "127.0.0.1", "chips": 1}},
                "instances": {"s": {"role": "colocated", "nodes": ["n1"], "port": 8000}},
            }
        )
    )
    proc = plan.process("s-0")
    assert proc.container_pidfile
    pidfile, log = Path(proc.container_pidfile), Path(run_dir(plan, proc), "log")
    node = LocalTransport("n1")
    try:
        handle = await node.spawn_detached(spawn_spec(plan, proc))
        for _ in range(200):
            if log.exists() and "ready" in log.read_text() and pidfile.exists():
                break
            await asyncio.sleep(0.05)
        inner = int(pidfile.read_text())  # the stand-in's "container" shares this machine's /tmp
        # adopted (reached into its container the profile's way), it is stopped the same way
        found = await node.find(
            run_dir(plan, proc), container_cli=proc.container_cli, container_pidfile=proc.container_pidfile
        )
        assert found == handle
        assert (handle.container, handle.container_cli) == ("ctr", (str(docker),))
        status = await node.stop(handle, grace=1.0)
        assert status.state == "exited"
        for _ in range(600):  # a SIGKILLed group may stay a zombie for a moment (a hang guard, not a bound)
            if not alive(inner):
                break
            await asyncio.sleep(0.05)
        assert not alive(inner), "the process in the container outlived stop"
        if not ignores_term:
            assert status.exit_code == 0 and "stopped by TERM" in log.read_text()
    finally:
        await node.close()
        if pidfile.exists():  # a failed stop leaves nothing behind either
            with contextlib.suppress(ValueError, OSError):
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)
            pidfile.unlink()


async def test_a_capped_log_keeps_its_newest_part_and_nothing_outlives_the_process(
    transport: ShellTransport, nodes_dir: str
) -> None:
    run_dir = run_dir_for(transport, nodes_dir, "chatty")
    chatty = (
        'i=0; while [ $i -lt 3000 ]; do echo "line $i of a chatty process, padded to some length"; i=$((i+1)); done'
    )
    capped = dataclasses.replace(
        spec(run_dir, f"{chatty}; echo last; sleep 600", "chatty"), log_cap=16384, log_every=0.1
    )
    handle = await transport.spawn_detached(capped)
    log, cut = Path(run_dir, "log"), Path(run_dir, "log.cut")
    for _ in range(400):  # the keeper's next look (a hang guard, not a bound on it)
        if cut.exists() and cut.read_text().endswith("last\n"):
            break
        await asyncio.sleep(0.05)
    assert cut.read_text().endswith("line 2999 of a chatty process, padded to some length\nlast\n")
    assert cut.stat().st_size <= 8192 and log.stat().st_size <= 16384  # ~170 KB written, the newest half kept
    assert (await transport.status(handle)).state == "running"
    stopped = await transport.stop(handle, grace=2.0)
    assert stopped.state == "exited" and stopped.leftovers == 0  # the keeper and its sleep went with it
    # a process that ends by itself: its exit code, and nothing of its group left behind
    ended = await transport.spawn_detached(
        dataclasses.replace(spec(run_dir_for(transport, nodes_dir, "brief"), "echo hi; exit 3", "brief"), log_cap=16384)
    )
    await wait_state(transport, ended, "exited")
    status = await transport.status(ended)
    assert (status.exit_code, status.leftovers) == (3, 0)
