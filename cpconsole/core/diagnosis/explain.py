"""Why a process failed, from its log lines: the cause, its place in the profile and what to do there."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..plan import LaunchPlan, ProcessPlan
from ..profile.rules import MOONCAKE_RANDOM_BASE
from .catalogue import CAUSES, Cause
from .place import Place, locate, read_place


@dataclass(frozen=True)
class FailureCause:
    kind: str
    summary: str
    hint: str
    evidence: str
    where: Place | None = None

    @property
    def place(self) -> str:
        """E.g. "prefill-b · rank 20 · NPU 4 · peer prefill-a (10.0.0.1:16666)"."""
        return str(self.where) if self.where else ""

    def as_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "summary": self.summary,
            "hint": self.hint,
            "evidence": self.evidence,
            "place": self.place,
        }


def find(lines: list[str]) -> tuple[Cause, str] | None:
    """The most specific known cause in the lines (causes in priority order, the latest line
    first) and the line that shows it."""
    for cause in CAUSES:
        for line in reversed(lines):
            if cause.matches(line):
                return cause, line
    return None


def classify(lines: list[str]) -> FailureCause | None:
    """The cause alone, without a plan to place it in."""
    found = find(lines)
    if found is None:
        return None
    cause, line = found
    return FailureCause(cause.kind, cause.summary, hint_for(cause, Place(node="its node"), lines), _evidence(line))


def explain(lines: list[str], proc: ProcessPlan, plan: LaunchPlan) -> FailureCause | None:
    """classify, placed: the node, rank, chip and peer the lines name, and hints that say where."""
    found = find(lines)
    if found is None:
        return None
    cause, line = found
    place = locate(read_place(line), proc, plan)
    hint = hint_for(cause, place, lines, proc, plan.node(proc.node).chips)
    return FailureCause(cause.kind, cause.summary, hint, _evidence(line), place)


def _evidence(line: str) -> str:
    return line.strip()[:300]


def hint_for(cause: Cause, place: Place, lines: list[str], proc: ProcessPlan | None = None, chips: int = 16) -> str:
    """The cause's hint with its place filled in; the port causes read which port from the lines
    and the process's own ports (chips: of its node, for Mooncake's port range)."""
    if cause.kind == "zmq_port" and proc is not None:
        kv = [(port.start, port.end) for port in proc.ports if port.kind == "kv"]
        return zmq_hint(kv, chips)
    if cause.kind == "port_in_use":
        return port_hint(lines, proc.http_port if proc else None, place.node)
    return cause.hint.format(
        node=place.node,
        device=place.device if place.device is not None else "N",
        peer=place.peer_text or "the peer",
    )


def zmq_hint(kv_ranges: list[tuple[int, int]], chips: int) -> str:
    """Why a ZMQ port was taken. Mooncake's transport picks random ports in [20000, 20000 +
    chips·1000): kv ports in there collide now and then. Outside it, the same error has other
    causes (vLLM's get_open_port / shm_broadcast race, two ranks starting at once, a stale process)."""
    end = MOONCAKE_RANDOM_BASE + chips * 1000 - 1
    inside = [(a, b) for a, b in kv_ranges if a <= end and b >= MOONCAKE_RANDOM_BASE]
    if inside:
        a, b = inside[0]
        return (
            f"its kv ports {a}-{b} lie inside Mooncake's random port range {MOONCAKE_RANDOM_BASE}-{end}: "
            f"move kv_port to {end + 1} or above (cpconsole validate warns)"
        )
    return (
        "its kv ports are outside Mooncake's random range, so not that: a process of an earlier run may still "
        "hold the port (`ss -ltnp`, `cpconsole status`), two ranks may have started at once on one host, or "
        "vLLM's get_open_port raced another process for a free port (restart the instance)"
    )


_BIND_PORT = re.compile(r"bind on address \('[^']*', (\d+)\)|: \('[^']*', (\d+)\)")


def port_hint(lines: list[str], http_port: int | None, node: str) -> str:
    """[Errno 98] alone does not say which port: the traceback around it does. vLLM binds its HTTP
    port first (create_server_socket); get_open_port binds port 0 for a free one and can lose a race."""
    text = "\n".join(lines[-40:])
    named = _BIND_PORT.search(text)
    port = int(named.group(1) or named.group(2)) if named else None
    if "get_open_port" in text:
        return (
            "vLLM's get_open_port found a free port and another process took it first (a race with a process "
            f"starting at the same time on {node}): restart the instance; start instances on one node apart"
        )
    if port is not None or "create_server_socket" in text or "api_server" in text:
        which = f"port {port}" if port is not None else f"its HTTP port {http_port or ''}".rstrip()
        return f"another server listens on {which} on {node}: find it with `ss -ltnp` (a stale run? `cpconsole status`)"
    return (
        f"a port this process binds is taken on {node}: its HTTP port {http_port or '?'} or one vLLM picked "
        "(get_open_port race): `ss -ltnp`, then restart"
    )
