"""manifest.json: what a run directory says about the process cpconsole started there. One type,
one encoder, one decoder. The launch facts are known before the start; the pid fields only on
the node once the process exists, so the spawn script writes `head()` and appends PID_TAIL."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .types import ProcessHandle

FILE = "manifest.json"
# printf format of the pid fields the spawn script appends to head(): pid, start ticks, boot id
PID_TAIL = ', "pid": %s, "start_ticks": %s, "boot_id": "%s"}'
_PID_FIELDS = ("pid", "start_ticks", "boot_id")


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
        another program's)."""
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                return None
            known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
            manifest = cls(**known)
            return replace(
                manifest,
                process=str(manifest.process),
                container_cli=tuple(map(str, manifest.container_cli or ("docker",))),
                argv=tuple(map(str, manifest.argv or ())),
                env={str(k): str(v) for k, v in dict(manifest.env or {}).items()},
                pid=None if manifest.pid is None else int(manifest.pid),
                start_ticks=None if manifest.start_ticks is None else int(manifest.start_ticks),
                boot_id=None if manifest.boot_id is None else str(manifest.boot_id),
            )
        except (ValueError, TypeError):
            return None

    def with_pid(self, pid: int, start_ticks: int, boot_id: str) -> Manifest:
        return replace(self, pid=pid, start_ticks=start_ticks, boot_id=boot_id)

    def handle(self, node: str, run_dir: str) -> ProcessHandle | None:
        """The process it names, once its pid fields are there."""
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
            container_pidfile=self.container_pidfile or None,
            container_cli=self.container_cli,
        )
