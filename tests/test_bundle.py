"""`cpconsole bundle`: an incident's evidence from every node and the session in one .tar.gz. On the
demo, a real failure replayed by the simulator (a stuck HCCL rank on the headless prefill rank):
the SUMMARY names the cause and its place, the archive holds the log that shows it, CANN's plog of
that node and the rest of the layout; the API key and a secret env value planted in the profile
appear nowhere in it. The archive's layout is deterministic and its size cap cuts plogs last."""

from __future__ import annotations

import asyncio
import json
import tarfile
from pathlib import Path

import pytest

from cpconsole.core.bundle import Archive, Redactor
from cpconsole.core.bundle.nodes import parse_plogs
from cpconsole.core.bundle.redact import REDACTED
from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile
from cpconsole.core.session import Session
from cpconsole.core.smoke.history import state_dir

from .simcluster import demo_text
from .test_diagnosis_live import until
from .test_orchestrate import cpconsole

KEY = "sk-bundle-test-4f1c9e7a2b"
SECRET = "hunter2-is-not-a-password"


def members(path: Path) -> dict[str, bytes]:
    """Every file of the archive by its name under the top directory."""
    with tarfile.open(path) as tar:
        files = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
        tops = {m.name.split("/", 1)[0] for m in tar.getmembers()}
    assert len(tops) == 1 and next(iter(tops)).startswith("cpconsole-bundle-demo-")
    return files


def test_a_bundle_after_a_failure_names_its_cause_and_holds_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = tmp_path / "demo.yaml"
    plogs = tmp_path / "ascend-log"
    text = demo_text(
        tmp_path,
        extra_env={"ASCEND_PROCESS_LOG_PATH": str(plogs), "OBJECT_STORE_TOKEN": SECRET},
        node_env={"prefill-b": {"CPCONSOLE_SIM_FAULT": "hccl_rank_stuck@1#20"}},
    )
    profile.write_text(text + "api_key:\n  env: CPCONSOLE_TEST_KEY\n")
    monkeypatch.setenv("CPCONSOLE_TEST_KEY", KEY)  # the verbs below read it from their environment
    try:
        cpconsole("up", profile)
        until(profile, lambda r: r["processes"][1]["cause"] is not None)
        out = tmp_path / "incident.tar.gz"
        done = cpconsole("bundle", profile, "-o", out)
        assert done.returncode == 0, done.stderr
        assert f"wrote {out}" in done.stdout and "prefill-1" in done.stdout and "bundle: " in done.stderr
    finally:
        cpconsole("down", profile)
    files = members(out)
    summary = files["SUMMARY.md"].decode()
    assert "**prefill-1** (prefill) on prefill-b: failed" in summary
    assert "where: prefill-b · rank 20 · NPU 4" in summary and "cause: " in summary
    assert "[rank20]: EI0006" in files["processes/prefill-1/log.txt"].decode()
    plog = [name for name in files if name.startswith("nodes/prefill-b/plog/plog-")]
    assert len(plog) == 1 and b"EI0006" in files[plog[0]]
    for name in ("profile.yaml", "alerts.json", "journal.jsonl", "metrics.prom", "nodes/prefill-b/npu-smi.txt"):
        assert files[name], name
    assert b"== hccn_tool -i 4 -link -g" in files["nodes/prefill-b/hccn.txt"]
    assert b"vllm " in files["nodes/decode-a/versions.txt"]
    assert "up " in files["journal.jsonl"].decode().replace('"verb":"up"', "up ")  # the up is in the window
    assert "- the driver's /usr/local/Ascend/driver/version.info on prefill-b" in summary  # missing, said
    assert b"OBJECT_STORE_TOKEN" in files["processes/prefill-0/launch.sh"]  # the name stays, its value goes
    whole = b"".join(files.values())
    assert KEY.encode() not in whole and SECRET.encode() not in whole
    with tarfile.open(out) as tar:  # nor in a name
        assert all(KEY not in m.name and SECRET not in m.name for m in tar.getmembers())


def test_the_archive_is_the_same_for_the_same_pieces_and_cut_plogs_last(tmp_path: Path) -> None:
    def made(cap: int) -> tuple[bytes, Archive]:
        archive = Archive("top", Redactor([SECRET]), mtime=1_700_000_000, max_bytes=cap)
        archive.add("nodes/a/plog/plog-1.log", "p" * 600)  # added first, read last
        archive.add("processes/x/log.txt", "l" * 300 + "the end")
        archive.add("profile.yaml", f"token: {SECRET}\n")
        archive.fit()
        out = tmp_path / f"b{cap}.tar.gz"
        archive.write(out)
        return out.read_bytes(), archive

    assert made(10_000)[0] == made(10_000)[0]  # no time, owner or order of its own
    archive = made(400)[1]
    assert archive.files["profile.yaml"] == f"token: {REDACTED}\n".encode()
    assert archive.files["processes/x/log.txt"].endswith(b"the end")  # whole: it fitted
    assert len(archive.files["nodes/a/plog/plog-1.log"]) == 400 - 307 - len(archive.files["profile.yaml"])
    assert archive.cut == [f"nodes/a/plog/plog-1.log: its last {400 - 307 - 18} of 600 bytes (size cap 0 MiB)"]


def test_secrets_by_shape_are_redacted_whatever_their_value() -> None:
    redact = Redactor([]).text
    assert redact("curl -H 'Authorization: Bearer abc.def'") == f"curl -H 'Authorization: Bearer {REDACTED}'"
    assert redact("vllm serve m --api-key abc123 --port 1") == f"vllm serve m --api-key {REDACTED} --port 1"
    assert redact('{"api_key": "xyz", "max_tokens": 16}') == f'{{"api_key": "{REDACTED}", "max_tokens": 16}}'


def test_bundle_misuse_is_exit_2(tmp_path: Path) -> None:
    profile = tmp_path / "demo.yaml"
    profile.write_text(demo_text(tmp_path))
    for words, said in [
        (["--since", "5x"], "a duration such as 90s"),
        (["--since", "1h", "--around", "2026-12-07T03:10"], "not allowed with argument"),
        (["--around", "yesterday"], "a time such as 2026-12-07T03:10"),
        (["-o", str(tmp_path / "no" / "b.tar.gz")], "no directory"),
    ]:
        done = cpconsole("bundle", profile, *words)
        assert done.returncode == 2 and said in done.stderr, (words, done.stderr)


async def test_a_watching_session_writes_a_bundle_when_an_alert_that_grave_is_raised(tmp_path: Path) -> None:
    """alerts.bundle_on: warning, and KV transfers failing on the decode while it serves (a warning
    that recurs): the session watching writes a bundle into the state directory by itself."""
    profile = tmp_path / "demo.yaml"
    text = demo_text(tmp_path, node_env={"decode-a": {"CPCONSOLE_SIM_FAULT": "kv_transfer_failed@0.2"}})
    profile.write_text(text + "alerts:\n  bundle_on: warning\n  bundle_keep: 1\n")
    try:
        assert cpconsole("up", profile).returncode == 0
        loaded = load_profile(profile)
        async with Session(build_plan(loaded), profile_file=str(profile)) as session:
            await session.start()
            for _ in range(600):  # the alert, then the bundle: a hang guard, not a speed bound
                if session.last_bundle is not None and session.last_bundle.exists():
                    break
                await asyncio.sleep(0.1)
            written = session.last_bundle
            assert written is not None and written.parent == state_dir() / "bundles" / "demo"
            again = await session.keep_bundle()  # the console's `B`: one kept (bundle_keep: 1)
            assert sorted(written.parent.glob("*.tar.gz")) == [again]
    finally:
        cpconsole("down", profile)
    files = members(again)
    alerts = json.loads(files["alerts.json"])
    assert any(a["kind"] == "kv_transfer_failed" and a["place"] == "decode-a" for a in alerts)
    assert "alert warning: " in files["SUMMARY.md"].decode()


def test_a_plog_name_from_a_node_stays_inside_the_bundle() -> None:
    """What a node prints is not trusted: a name that climbs out of the plog directory is kept inside."""
    printed = b"3 3 ./../../etc/cron.d/x\nabc2 2 /abs/plog-1.log\nde"
    assert parse_plogs(printed) == [("etc/cron.d/x", 3, b"abc"), ("abs/plog-1.log", 2, b"de")]
