"""Alert transitions to notifications, fanned out to the profile's channels."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

import httpx

from ..profile.schema import Notify
from ..tasks import cancel_and_wait
from ..telemetry.alerts import Alert
from .message import Notification, State
from .tmux import display
from .webhook import WebhookChannel

SOURCE = "notify"  # alerts about delivery itself: shown, never sent (a failing receiver would loop)
KEEP = 200


class Notifier:
    def __init__(
        self,
        profile: str,
        settings: Notify,
        http: httpx.AsyncClient,
        *,
        sender: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.profile = profile
        self.settings = settings
        self.sender = sender
        self.webhooks = [WebhookChannel(hook, http) for hook in settings.webhooks]
        self.tmux_error = ""  # the last display-message that failed, while it does
        self._clock = clock
        self._recent: deque[tuple[int, Notification]] = deque(maxlen=KEEP)
        self._seq = 0
        self._shows: set[asyncio.Task[None]] = set()

    def wants(self, alert: Alert) -> bool:
        return alert.source != SOURCE and (self.settings.min_severity == "warning" or alert.severity == "critical")

    def offer(self, raised: Sequence[Alert], cleared: Sequence[Alert]) -> None:
        """The alerts raised and cleared in one round: each is one notification on every channel."""
        for alert in raised:
            if self.wants(alert):
                self._send(self._note("firing", alert))
        for alert in cleared:
            if self.wants(alert):
                self._send(self._note("resolved", alert))

    def _note(self, state: State, alert: Alert) -> Notification:
        return Notification(state, alert, self._clock(), self.profile, self.sender)

    def _send(self, note: Notification) -> None:
        self._seq += 1
        self._recent.append((self._seq, note))
        for hook in self.webhooks:
            hook.offer(note)
        if self.settings.tmux:
            task = asyncio.create_task(self._show(note))
            self._shows.add(task)
            task.add_done_callback(self._shows.discard)

    async def _show(self, note: Notification) -> None:
        error = await display(note.text())
        self.tmux_error = "" if error in (None, "not inside tmux") else str(error)

    def since(self, seq: int) -> tuple[int, list[Notification]]:
        """The notifications after `seq` (for the bell and a watcher's log), and the seq to ask with next."""
        return self._seq, [note for n, note in self._recent if n > seq]

    def problems(self) -> list[Alert]:
        """A channel that fails, as a warning of its own (until a notification gets through)."""
        failing = [(hook.name, hook.delivery.last_error) for hook in self.webhooks if hook.delivery.last_error]
        if self.tmux_error:
            failing.append(("tmux", self.tmux_error))
        return [
            Alert(f"{SOURCE}:{name}", "warning", SOURCE, f"alerts do not reach {name}: {error}")
            for name, error in failing
        ]

    async def test(self) -> dict[str, str | None]:
        """A test notification on every channel now: per channel, None when it got through, else why not."""
        note = self._note("test", Alert("test", "warning", "cpconsole", "a test notification: alerts reach you"))
        results: dict[str, str | None] = {}
        if self.settings.tmux:
            results["tmux"] = await display(note.text())
        for hook, error in zip(
            self.webhooks, await asyncio.gather(*(h.send(note) for h in self.webhooks)), strict=True
        ):
            results[hook.name] = error
        return results

    async def close(self) -> None:
        await cancel_and_wait(*self._shows)
        await asyncio.gather(*(hook.close() for hook in self.webhooks), return_exceptions=True)
