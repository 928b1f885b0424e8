"""Alerts reaching people: once when raised, once when cleared, by webhook, tmux and the bell."""

from .message import Notification
from .notifier import Notifier

__all__ = ["Notification", "Notifier"]
