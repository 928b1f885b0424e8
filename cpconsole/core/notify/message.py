"""What a notification says: one line for people, a JSON body for machines."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from ..telemetry.alerts import Alert

State = Literal["firing", "resolved", "test"]


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


@dataclass(frozen=True)
class Notification:
    state: State
    alert: Alert
    at: float  # seconds since the epoch
    profile: str
    sender: str  # user@host of the console or watch that noticed it

    def text(self) -> str:
        """One line: what, where, and (while firing) what to do."""
        alert = self.alert
        word = alert.severity.upper() if self.state == "firing" else self.state.upper()
        where = f" at {alert.place}" if alert.place else ""
        hint = f"; {alert.hint}" if alert.hint and self.state == "firing" else ""
        return f"[{self.profile}] {word} {alert.source}: {alert.message}{where}{hint}"

    def payload(self, dropped_before: int = 0) -> dict[str, object]:
        """The webhook body. `text` makes Slack-style receivers show it as it is."""
        alert = self.alert
        return {
            "text": self.text(),
            "state": self.state,
            "profile": self.profile,
            "sender": self.sender,
            "at": iso(self.at),
            "key": alert.key,
            "severity": alert.severity,
            "source": alert.source,
            "message": alert.message,
            "kind": alert.kind,
            "place": alert.place,
            "hint": alert.hint,
            "evidence": alert.evidence,
            "first_seen": iso(alert.first_seen) if alert.first_seen is not None else None,
            "dropped_before": dropped_before,  # held back by the rate limit since the last one sent
        }
