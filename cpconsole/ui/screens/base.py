"""What every console screen shares: the session it shows, redrawn on the app's refresh tick."""

from __future__ import annotations

from collections.abc import Hashable

from rich.console import RenderableType
from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static

from ...core.session import Session


class SessionScreen(Screen[None]):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self._drawn: dict[str, object] = {}

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
