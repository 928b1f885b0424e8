"""Leftovers: processes of a profile whose run directories were deleted under them are found on
their nodes by their command line, listed, and stopped only when asked to — never a tracked
process, never another deployment's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cpconsole.core.orchestrate.orphans import SEPARATOR, find
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_text

from .simcluster import demo_text
from .test_orchestrate import cpconsole


def test_processes_whose_run_directories_were_deleted_are_found_and_stopped_on_request(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    try:
        assert cpconsole("up", profile).returncode == 0
        done = cpconsole("down", profile, "--orphans")
        assert (done.returncode, done.stdout) == (0, "no processes of this profile run untracked\n")  # all tracked
        shutil.rmtree(tmp_path / "run")  # an operator's clean-up, under running processes
        report = json.loads(cpconsole("status", profile, "--json").stdout)
        assert {p["state"] for p in report["processes"]} == {"planned"}  # cpconsole lost them
        done = cpconsole("down", profile, "--orphans")  # no terminal to ask, no --yes: list only
        assert done.returncode == 1 and "nothing stopped; add --yes to go ahead" in done.stderr
        assert "4 untracked process group(s)" in done.stdout
        for name in ("prefill-0", "prefill-1", "decode-0", "proxy"):
            assert f"looks like {name}" in done.stdout
        done = cpconsole("down", profile, "--orphans", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count(" stopped\n") == 4
        assert cpconsole("down", profile, "--orphans").stdout == "no processes of this profile run untracked\n"
        assert cpconsole("up", profile).returncode == 0  # its ports are free again
    finally:
        cpconsole("down", profile)
        cpconsole("down", profile, "--orphans", "--yes")  # whatever a failure above left untracked


def test_only_the_profiles_own_untracked_processes_match() -> None:
    plan = build_plan(load_profile_text(demo_text(Path("/tmp/unused"))))
    decode = plan.process("decode-0")
    host, port = decode.address, str(decode.http_port)
    ours = " ".join(decode.argv)
    listing = "\n".join(
        [
            f"  100   100 {ours}",
            "  101   100 python3 -c from multiprocessing.spawn import spawn_main",  # its engine: same session
            f"  200   200 {ours.replace(host, '127.9.9.9')}",  # another deployment's decode
            f"  300   300 python3 -m http.server --host {host} --port {port}",  # another program on the port
            f"  400   400 {ours}",  # tracked: adopted by this console
            f"  500   500 {ours}",  # its leader works in a run directory with a manifest
            f"  600   600 {ours}",  # … of the layout before profile identities: nothing adopts it
            SEPARATOR,
            "500 /root/.cache/cpconsole/demo-1f2e3d4c/decode-0",
            "600 /root/.cache/cpconsole/demo/decode-0",
        ]
    )
    found = find(plan, {decode.node: listing}, {decode.node: {400}})
    assert [(o.process, o.session, o.pids) for o in found] == [("decode-0", 100, (100, 101)), ("decode-0", 600, (600,))]
