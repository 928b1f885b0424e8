"""What every console screen shares: the session it shows, redrawn on the app's refresh tick."""

from __future__ import annotations

from textual.screen import Screen

from ...core.session import Session


class SessionScreen(Screen[None]):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    def refresh_from(self, session: Session) -> None:
        """Redraw from the session's current state (called every refresh tick)."""
