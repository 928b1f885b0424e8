"""Where answers stream in: text wrapped at the pane's edge, appended piece by piece (never a
redraw of the whole answer), read-only, scrolled to its end; nothing in it acts on the terminal."""

from __future__ import annotations

from textual.widgets import TextArea

from ...core.safetext import terminal_safe_lines


class AnswerView(TextArea):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, read_only=True, soft_wrap=True, show_line_numbers=False)

    def append(self, text: str) -> None:
        self.insert(terminal_safe_lines(text), self.document.end, maintain_selection_offset=False)
        self.scroll_end(animate=False)

    def append_line(self, text: str) -> None:
        self.append(text + "\n")
