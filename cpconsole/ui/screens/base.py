"""What every console screen shares: the session it shows, redrawn on the app's refresh tick."""

from __future__ import annotations

from collections.abc import Coroutine, Hashable
from typing import TYPE_CHECKING, Any, cast

from rich.console import RenderableType
from rich.text import Text
from textual.app import App
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from ...core.session import Session
from ..keys import shown

if TYPE_CHECKING:
    from ..app import ConsoleApp


def said_if_failed(node: App[Any] | Screen[Any], session: Session, event: Worker.StateChanged) -> None:
    """A worker that raised: said at once, and kept in the session's alerts."""
    error = event.worker.error
    if event.state is WorkerState.ERROR and error is not None:
        what = event.worker.group if event.worker.group != "default" else event.worker.name
        node.notify(f"{what} failed: {error!r}", severity="error", timeout=15)
        session.report_failure(what, error)


class SessionScreen(Screen[None]):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self._drawn: dict[str, object] = {}

    def key_shown(self, binding_id: str) -> str:
        """The key that runs one of the app's bindings now (keymap.yaml may have moved it)."""
        console = cast("ConsoleApp", self.app)
        return shown(console.keys[binding_id])

    def work(self, job: Coroutine[Any, Any, object], *, group: str) -> None:
        """Run an action of this screen; one of its group at a time, a failure said, never fatal."""
        self.run_worker(job, group=group, exclusive=True, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        said_if_failed(self, self.session, event)

    def refresh_from(self, session: Session) -> None:
        """Redraw from the session's current state (called every refresh tick)."""

    def draw(self, selector: str, content: RenderableType, key: Hashable | None = None) -> None:
        """Update a Static only when what it shows changed (a Text compares itself; anything else
        by `key`): an idle console must not re-lay-out and re-render every tick."""
        same_as = key if key is not None else content if isinstance(content, Text) else object()
        if self._drawn.get(selector) == same_as:
            return
        self._drawn[selector] = same_as
        self.query_one(selector, Static).update(content)
