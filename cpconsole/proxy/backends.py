"""The proxy's backends and how one is chosen: the least busy of the healthy ones of a role.

A backend that refuses a connection, resets it or times out is taken out of rotation at once (its
circuit opens) and asked for /health in the background until it answers, then taken back. One
being drained (`/instances/drain`, as cpconsole does before it restarts an instance) takes no new
requests while the ones it holds finish."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger("cpconsole.proxy")
Kind = Literal["prefill", "decode"]
BackendState = Literal["healthy", "open", "draining"]


@dataclass(eq=False)  # one object per backend: identity, not value, tells two apart
class Backend:
    host: str
    port: int
    active: int = 0
    order: int = 0
    trusted: bool = True  # started with: gets the API key; added at run time: never does
    state: BackendState = "healthy"
    reason: str = ""  # why its circuit is open
    since: float = field(default_factory=time.monotonic)  # in this state

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def _move(self, state: BackendState, reason: str = "") -> None:
        self.state, self.reason, self.since = state, reason, time.monotonic()

    def trip(self, reason: str) -> None:
        """It failed a request: out of rotation until its /health answers (a drained one stays drained)."""
        if self.state == "healthy":
            log.warning("backend %s taken out of rotation: %s", self.name, reason)
            self._move("open", reason)

    def recovered(self) -> None:
        if self.state == "open":
            log.warning("backend %s answers again: back in rotation", self.name)
            self._move("healthy")

    def drain(self) -> None:
        self._move("draining")

    def resume(self) -> None:
        self._move("healthy")

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"instance": self.name, "state": self.state, "active": self.active}
        if self.reason and self.state == "open":
            shown["reason"] = self.reason
        return shown


@dataclass
class Pool:
    backends: list[Backend] = field(default_factory=list)
    _added: int = 0

    def add(self, host: str, port: int, *, trusted: bool = True) -> Backend:
        found = self.find(host, port)
        if found is not None:
            return found
        self._added += 1
        backend = Backend(host, port, order=self._added, trusted=trusted)
        self.backends.append(backend)
        return backend

    def find(self, host: str, port: int) -> Backend | None:
        return next((b for b in self.backends if b.host == host and b.port == port), None)

    def remove(self, host: str, port: int) -> None:
        self.backends = [b for b in self.backends if not (b.host == host and b.port == port)]

    def pick(self, tried: Collection[Backend] = ()) -> Backend | None:
        """The least busy healthy backend not tried yet for this request; ties go to the one added
        first."""
        ready = [b for b in self.backends if b.state == "healthy" and b not in tried]
        return min(ready, key=lambda b: (b.active, b.order), default=None)

    @property
    def healthy(self) -> int:
        return sum(b.state == "healthy" for b in self.backends)
