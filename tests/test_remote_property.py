"""Property: arbitrary env values, arguments and paths — quotes, $(…), newlines, unicode — spawned
detached on a node over SSH arrive byte-exact (the process writes its argv and env as JSON)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import posixpath
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import load_profile_data
from cpconsole.core.remote import SSHTransport
from cpconsole.core.remote.launch import spawn_spec
from cpconsole.core.remote.manifest import Manifest

from .sshd import Sshd
from .test_render_property import ANY_TEXT, ENV_NAMES, profile_data

RECORDER = """#!/usr/bin/python3
import json, os, sys
with open("recorded.json", "w") as out:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, out)
"""
PATH_PART = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00/"), min_size=1, max_size=20
).filter(lambda p: p not in (".", "..") and len(p.encode()) < 200)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_spawned_strings_arrive_byte_exact(sshd: Sshd, nodes_dir: str, loop: asyncio.AbstractEventLoop) -> None:
    recorder = Path(nodes_dir, "recorder")
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    node = SSHTransport(sshd.node(sshd.ips[0], run_dir=nodes_dir))

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        model=ANY_TEXT,
        env=st.dictionaries(ENV_NAMES, ANY_TEXT, max_size=3),
        extra=ANY_TEXT,
        profile_dir=PATH_PART,
    )
    def check(model: str, env: dict[str, str], extra: str, profile_dir: str) -> None:
        data = profile_data(model, env, {}, extra, container=False)
        data["defaults"]["vllm_command"] = [str(recorder), extra]  # type: ignore[index]
        plan = build_plan(load_profile_data(data))
        proc = plan.process("s-0")
        spec = spawn_spec(plan, proc)
        spec = dataclasses.replace(spec, run_dir=posixpath.join(nodes_dir, profile_dir, "s-0"))

        async def run() -> dict[str, object]:
            handle = await node.spawn_detached(spec)
            for _ in range(200):
                if (await node.status(handle)).state != "running":
                    break
                await asyncio.sleep(0.02)
            assert (await node.status(handle)).exit_code == 0
            data = await node.read_file(posixpath.join(spec.run_dir, "recorded.json"))
            written = Manifest.decode(await node.read_file(posixpath.join(spec.run_dir, "manifest.json")))
            assert written == spec.manifest.with_pid(handle.pid, handle.start_ticks, handle.boot_id)  # byte-exact
            assert list(written.argv) == list(proc.argv) and written.env == env
            return json.loads(data)  # type: ignore[no-any-return]

        got = loop.run_until_complete(run())
        assert got["argv"] == list(proc.argv[1:])
        recorded_env = got["env"]
        assert isinstance(recorded_env, dict)
        assert {k: recorded_env.get(k) for k in env} == env

    try:
        check()
    finally:
        loop.run_until_complete(node.close())
