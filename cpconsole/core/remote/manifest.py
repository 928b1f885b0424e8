"""manifest.json: what a run directory says about the process cpconsole started there. One type,
one encoder, one decoder. The launch facts are known before the start; the pid fields only on
the node once the process exists, so the spawn script writes `head()` and appends PID_TAIL."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .types import ProcessHandle

FILE = "manifest.json"
# printf format of the pid fields the spawn script appends to head(): pid, start ticks, boot id
PID_TAIL = ', "pid": %s, "start_ticks": %s, "boot_id": "%s"}'
_PID_FIELDS = ("pid", "start_ticks", "boot_id")
# what a node's file may say, checked before anything acts on it (a file on a node is anybody's
# who can write there): Linux's boot id is a UUID; docker's container names are [a-zA-Z0-9][a-zA-Z0-9_.-]+
BOOT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


def valid_pid(pid: object) -> bool:
    """A pid cpconsole may ever signal: a plain integer above 1 (pid 1 is init, and `kill -1` means
    every process the caller may signal) within Linux's pid range."""
    return type(pid) is int and 1 < pid <= 4194304


@dataclass(frozen=True)
class Manifest:
    process: str
    profile: str = ""
    run_key: str = ""  # the deployment it belongs to (LaunchPlan.run_key)
    digest: str = ""  # the plan's digest when it started: another one now means the profile changed
    node: str = ""
    role: str = ""
    container: str | None = None
    container_pidfile: str | None = None
    container_cli: tuple[str, ...] = ("docker",)
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    started_at: str = ""
    started_by: str = ""  # user@host
    pid: int | None = None  # the wrapper's, whose process group and session hold the rest
    start_ticks: int | None = None  # with pid and boot_id: that very process, never a reused pid
    boot_id: str | None = None

    def _launch_fields(self) -> dict[str, Any]:
        fields = asdict(self)
        for name in _PID_FIELDS:
            del fields[name]
        return fields

    def head(self) -> str:
        """The JSON of the launch facts without its closing brace, for the spawn script to finish."""
        return json.dumps(self._launch_fields(), ensure_ascii=False)[:-1]

    def encode(self) -> bytes:
        """The whole file, as the spawn script leaves it once the pid fields are appended."""
        fields = {**self._launch_fields(), **{name: getattr(self, name) for name in _PID_FIELDS}}
        return (json.dumps(fields, ensure_ascii=False) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes) -> Manifest | None:
        """A manifest from the file's bytes; None for anything that is not one (torn, edited,
        another program's) or that does not validate: a pid that is not one cpconsole could have
        started, a boot id or container name of the wrong shape. The container command and pid
        file are never taken from the node: `handle` is given the profile's."""
        try:
            raw = json.loads(data)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None
        pid, ticks, boot = raw.get("pid"), raw.get("start_ticks"), raw.get("boot_id")
        if pid is not None and not valid_pid(pid):
            return None
        if ticks is not None and not (type(ticks) is int and ticks >= 0):
            return None
        if boot is not None and not (isinstance(boot, str) and BOOT_ID.fullmatch(boot)):
            return None
        container = raw.get("container")
        if container is not None and not (isinstance(container, str) and CONTAINER_NAME.fullmatch(container)):
            return None
        argv, env = raw.get("argv") or [], raw.get("env") or {}
        if not isinstance(argv, list) or not isinstance(env, dict):
            return None

        def text(key: str) -> str:
            return str(raw.get(key) or "")

        return cls(
            process=text("process"),
            profile=text("profile"),
            run_key=text("run_key"),
            digest=text("digest"),
            node=text("node"),
            role=text("role"),
            container=container,
            argv=tuple(map(str, argv)),
            env={str(k): str(v) for k, v in env.items()},
            started_at=text("started_at"),
            started_by=text("started_by"),
            pid=pid,
            start_ticks=ticks,
            boot_id=boot,
        )

    def with_pid(self, pid: int, start_ticks: int, boot_id: str) -> Manifest:
        return replace(self, pid=pid, start_ticks=start_ticks, boot_id=boot_id)

    def handle(
        self, node: str, run_dir: str, *, container_cli: tuple[str, ...], container_pidfile: str | None
    ) -> ProcessHandle | None:
        """The process it names, once its pid fields are there. How to reach into its container
        (the command, the pid file in there) is the caller's: the profile's, never the node's."""
        if self.pid is None or self.start_ticks is None or self.boot_id is None:
            return None
        return ProcessHandle(
            node=node,
            name=self.process,
            run_dir=run_dir,
            pid=self.pid,
            start_ticks=self.start_ticks,
            boot_id=self.boot_id,
            container=self.container or None,
            container_pidfile=container_pidfile if self.container else None,
            container_cli=container_cli,
        )
