"""The command line as scripts use it: exit codes, output formats, and never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cpconsole import __version__

from .conftest import PROFILES, line_of, write_profile

GUIDE = PROFILES / "deepseek-v3.1-cp-1p1d.yaml"


def cpconsole(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cpconsole", *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_version() -> None:
    done = cpconsole("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"cpconsole {__version__}"


def test_validate_valid_profile_prints_warnings_and_exits_0() -> None:
    done = cpconsole("validate", GUIDE)
    assert done.returncode == 0
    assert done.stdout.strip() == f"{GUIDE}: valid (6 warnings)"
    assert done.stderr.count(": warning: ") == 6 and "use kv_port ≥ 36000" in done.stderr
    assert "VLLM_ENGINE_READY_TIMEOUT_S" in done.stderr
    assert done.stderr.count(": info: ") == 2 and "HCCL_CONNECT_TIMEOUT" in done.stderr  # suggestions, not counted
    assert "does not read use_ascend_direct" in done.stderr
    assert done.stderr.count(f"{GUIDE}:") == 8


def test_validate_broken_profile_exits_2_with_file_line_col(tmp_path: Path) -> None:
    text = GUIDE.read_text().replace("decode_context_parallel_size: 8", "decode_context_parallel_size: 6")
    path = write_profile(tmp_path, text)
    done = cpconsole("validate", path)
    assert done.returncode == 2
    assert done.stdout == ""
    line = line_of(text, "decode_context_parallel_size: 6")
    assert done.stderr == (
        f"{path}:{line}:7: instances.prefill.vllm_args.decode_context_parallel_size: "
        "6 does not divide tensor_parallel_size 16 (choose 1, 2, 4, 8 or 16)\n"
    )


def test_yaml_garbage_exits_2_without_traceback(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "name: [unclosed\n  - {: :\n")
    for command in ("validate", "render"):
        done = cpconsole(command, path)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith(f"{path}:")


def test_missing_file_exits_2(tmp_path: Path) -> None:
    done = cpconsole("render", tmp_path / "missing.yaml")
    assert done.returncode == 2
    assert "cannot read the profile: No such file or directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_render_json_lists_every_process() -> None:
    done = cpconsole("render", GUIDE, "--format", "json")
    assert done.returncode == 0
    processes = json.loads(done.stdout)
    assert [p["name"] for p in processes] == ["prefill-0", "prefill-1", "decode-0", "proxy"]
    for proc in processes:
        assert {"name", "role", "node", "host", "container", "env", "argv"} <= set(proc)
    assert processes[1]["host"] == "192.0.0.2" and "--headless" in processes[1]["argv"]


def test_render_one_process_as_shell() -> None:
    done = cpconsole("render", GUIDE, "--process", "decode-0")
    assert done.returncode == 0
    assert "# ---- decode-0 → 192.0.0.3" in done.stdout
    assert "prefill" not in done.stdout.split("\n", 1)[0]
    assert "--data-parallel-address 192.0.0.3" in done.stdout
    assert done.stdout.count("#!/bin/sh") == 1


def test_render_unknown_process_exits_2() -> None:
    done = cpconsole("render", GUIDE, "--process", "zzz")
    assert done.returncode == 2
    assert "no process named 'zzz' (processes are: prefill-0, prefill-1, decode-0, proxy)" in done.stderr


def test_schema_is_json_schema_of_the_profile() -> None:
    done = cpconsole("schema")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert schema["title"] == "Profile"
    assert {"name", "model", "nodes", "instances", "proxy"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_plan_prints_the_summary() -> None:
    done = cpconsole("plan", GUIDE)
    assert done.returncode == 0
    assert "deepseek-v3.1-cp-1p1d  (3 nodes, 4 processes)" in done.stdout
    assert "prefill-1" in done.stdout and "headless" in done.stdout


def test_no_arguments_prints_help_and_exits_2() -> None:
    done = cpconsole()
    assert done.returncode == 2
    assert "validate" in done.stdout and "render" in done.stdout


def test_logs_since_offset_gives_a_script_the_log_piece_by_piece(tmp_path: Path) -> None:
    from cpconsole.core.plan import build_plan
    from cpconsole.core.profile import load_profile_text
    from cpconsole.core.remote.launch import run_dir

    from .simcluster import demo_text

    profile = write_profile(tmp_path, demo_text(tmp_path))
    plan = build_plan(load_profile_text(profile.read_text()))
    log = Path(run_dir(plan, plan.process("decode-0")), "log")
    log.parent.mkdir(parents=True)
    log.write_bytes(b"INFO first\nINFO second\n")
    first = cpconsole("logs", profile, "-p", "decode-0", "--since-offset", "0")
    assert (first.returncode, first.stdout, first.stderr) == (0, "INFO first\nINFO second\n", "next offset: 23\n")
    with log.open("ab") as out:
        out.write(b"WARNING third\n")
    again = cpconsole("logs", profile, "-p", "decode-0", "--since-offset", "23")
    assert (again.stdout, again.stderr) == ("WARNING third\n", "next offset: 37\n")
    log.write_bytes(b"INFO restarted\n")  # a new log, shorter than the offset
    restarted = cpconsole("logs", profile, "-p", "decode-0", "--since-offset", "37")
    assert restarted.stdout == "INFO restarted\n" and "shorter than 37 bytes now" in restarted.stderr
    follower = subprocess.Popen(
        [sys.executable, "-m", "cpconsole", "logs", str(profile), "-p", "decode-0", "--since-offset", "7", "-f"],
        stdout=subprocess.PIPE,
    )
    try:
        assert follower.stdout and follower.stdout.readline() == b"started\n"
        with log.open("ab") as out:
            out.write(b"INFO after\n")
        assert follower.stdout.readline() == b"INFO after\n"  # followed on, as raw as before
    finally:
        follower.kill()
        follower.wait()
    merged = cpconsole("logs", profile, "-p", "decode-0", "-n", "1")  # the default: prefixed last lines
    assert merged.stdout == "decode-0 | INFO after\n"
    for wrong in (("--since-offset", "0"), ("-p", "decode-0", "--since-offset", "-1")):
        refused = cpconsole("logs", profile, *wrong)
        assert refused.returncode == 2 and "name its process with -p" in refused.stderr


def test_exec_output_is_cut_at_a_byte_bound_and_says_so(tmp_path: Path) -> None:
    """`yes` on a node would fill the console's memory: its output stops at 1 MiB, marked, and the
    command is ended (SIGPIPE); a short command's output and exit code come whole."""
    from .simcluster import demo_text

    profile = write_profile(tmp_path, demo_text(tmp_path))
    endless = cpconsole("exec", profile, "decode-a", "--", "yes")
    assert endless.returncode == 1
    assert len(endless.stdout) < (1 << 20) + 1000 and endless.stdout.count("y\n") > 500_000
    assert "… [output cut at 1 MiB]\n(exit 141)\n" in endless.stdout
    short = cpconsole("exec", profile, "--all", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert short.returncode == 1
    assert short.stdout.endswith("out\nerr\n(exit 3)\n") and "identical on 3/3 nodes" in short.stdout
