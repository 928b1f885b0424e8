"""The log of one process, or all of them merged with prefixes; follows as lines arrive.
Lines are written in batches (one write per refresh), ANSI colour codes stripped. `/` searches
(n/N for the next/previous match), `f` filters (`!text` inverts), e/E jump between error lines,
`s` saves what is shown. A banner says when a stream is disconnected and resuming; lines that fell
out of a full ring before they could be shown are counted, never silently lost."""

from __future__ import annotations

import re
import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Footer, Header, Input, Log, Static

from ...core.logsearch import ERROR_LINE, compile_query, find, keep, parse_filter, step
from ...core.orchestrate.progress import POLL_LINE
from ...core.safetext import terminal_safe
from ...core.session import Session
from .base import SessionScreen

MAX_LINE = 1000  # very long lines are cut for display


class LogsScreen(SessionScreen):
    BINDINGS = [
        ("left_square_bracket", "cycle(-1)", "Prev"),
        ("right_square_bracket", "cycle(1)", "Next"),
        ("h", "toggle_polls", "Health/metrics lines"),
        ("slash", "ask('search')", "Search"),
        ("f", "ask('filter')", "Filter"),
        ("n", "jump(1)", "Next match"),
        ("N", "jump(-1)", "Prev match"),
        ("e", "error(1)", "Next error"),
        ("E", "error(-1)", "Prev error"),
        ("F", "toggle_follow", "Follow"),
        ("s", "save", "Save"),
        ("escape", "close_prompt", "Close"),
    ]

    def __init__(self, session: Session, process: str | None = None) -> None:
        super().__init__(session)
        self.process = process  # None: every process, merged
        self.hide_polls = True
        self._seen: dict[str, int] = {}
        self._lines: list[str] = []  # everything read since the last reset, before the filter
        self._filter: tuple[re.Pattern[str], bool] | None = None
        self._filter_text = ""
        self._search = ""
        self._matches: list[int] = []
        self._at = -1
        self._asking = ""
        self.dropped = 0  # lines that left a store's ring before this view read them
        self.save_dir = Path.cwd()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="source")
        yield Static(id="banner", classes="hidden")
        yield Log(id="log", max_lines=20_000)
        yield Input(id="prompt", classes="hidden")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._reset()

    def _names(self) -> list[str]:
        return [self.process] if self.process else [p.name for p in self.session.plan.processes]

    def _reset(self) -> None:
        self.query_one(Log).clear()
        self._seen = {}
        self._lines = []
        self._matches, self._at = [], -1
        self.dropped = 0
        self._status()
        self.refresh_from(self.session)

    def _status(self) -> None:
        label = self.process or "all processes"
        polls = "hidden" if self.hide_polls else "shown"
        text = Text(f"logs: {label}   [ ] switch   h: polls {polls}   / search   f filter   e/E errors")
        if self._filter_text:
            text.append(f"   filter: {self._filter_text}", style="bold yellow")
        if self._search:
            where = f"{self._matches.index(self._at) + 1}/" if self._at in self._matches else ""
            text.append(f"   search: {self._search} ({where}{len(self._matches)} matches)", style="bold cyan")
        if not self.query_one(Log).auto_scroll:
            text.append("   follow off (F)", style="bold magenta")
        if self.dropped:
            text.append(f"   {self.dropped} lines dropped (ring full)", style="bold red")
        self.query_one("#source", Static).update(text)

    # ------------------------------------------------------------ search, filter, errors

    def action_ask(self, what: str) -> None:
        prompt = self.query_one("#prompt", Input)
        self._asking = what
        prompt.placeholder = "search (regex or text)" if what == "search" else "filter: text keeps, !text hides"
        prompt.value = self._search if what == "search" else self._filter_text
        prompt.remove_class("hidden")
        prompt.focus()

    def action_close_prompt(self) -> None:
        self.query_one("#prompt", Input).add_class("hidden")
        self.query_one(Log).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_close_prompt()
        if self._asking == "filter":
            self._filter_text = event.value
            self._filter = parse_filter(event.value)
            self._redraw()
        else:
            self._search = event.value
            self._find()
            self.action_jump(1)
        self._status()

    def _visible(self) -> list[str]:
        return [line for line in self._lines if keep(line, self._filter)]

    def _redraw(self) -> None:
        log = self.query_one(Log)
        log.clear()
        log.write_lines(self._visible())
        self._find()

    def _find(self) -> None:
        lines = self.query_one(Log).lines
        self._matches = find(lines, compile_query(self._search)) if self._search else []

    @property
    def marked_line(self) -> int | None:
        """The line the last search or error jump went to."""
        return self._at if self._at >= 0 else None

    def _goto(self, index: int | None) -> None:
        if index is None:
            self.notify("no match", severity="warning")
            return
        log = self.query_one(Log)
        log.auto_scroll = False
        self._at = index
        log.scroll_to(y=max(0, index - 3), animate=False)
        self._status()

    def action_jump(self, direction: int) -> None:
        self._goto(step(self._matches, self._at, direction))

    def action_error(self, direction: int) -> None:
        self._goto(step(find(self.query_one(Log).lines, ERROR_LINE), self._at, direction))

    def action_toggle_follow(self) -> None:
        log = self.query_one(Log)
        log.auto_scroll = not log.auto_scroll
        if log.auto_scroll:
            log.scroll_end(animate=False)
        self._status()

    def action_toggle_polls(self) -> None:
        self.hide_polls = not self.hide_polls
        self._reset()

    def action_cycle(self, step: int) -> None:
        names = [None, *(p.name for p in self.session.plan.processes)]
        self.process = names[(names.index(self.process) + step) % len(names)]
        self._reset()

    def action_save(self) -> None:
        """Write what the view holds (after the filter) to a file in the working directory."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.session.now()))
        path = self.save_dir / f"cpconsole-{self.process or 'all'}-{stamp}.log"
        try:
            path.write_text("".join(line + "\n" for line in self._visible()), encoding="utf-8")
        except OSError as exc:
            self.notify(f"could not save: {exc}", severity="error")
            return
        self.notify(f"saved {len(self._visible())} lines to {path}")

    def _banner(self, session: Session) -> None:
        lost = [(n, e) for n in self._names() if (e := session.log(n).disconnected)]
        banner = self.query_one("#banner", Static)
        banner.set_class(not lost, "hidden")
        if lost:
            banner.update(
                Text("  ".join(f"⚠ {n}: stream disconnected ({e.detail or 'no detail'}) — resuming" for n, e in lost))
            )

    def refresh_from(self, session: Session) -> None:
        self._banner(session)
        width = max(len(n) for n in self._names())
        batch: list[str] = []
        dropped = self.dropped
        for name in self._names():
            store = session.log(name)
            seen = self._seen.get(name, store.first_seq)  # what fell out before the view opened is not news
            start, lines = store.since(seen)
            self.dropped += start - seen
            self._seen[name] = start + len(lines)
            prefix = f"{name:<{width}} | " if self.process is None else ""
            # cut first: a megabyte-long line must not reach a regex
            batch.extend(
                prefix + terminal_safe(line[: 2 * MAX_LINE])[:MAX_LINE]
                for line in lines
                if not (self.hide_polls and POLL_LINE.search(line, 0, 300))
            )
        if batch:
            self._lines.extend(batch)
            del self._lines[:-20_000]
            shown = [line for line in batch if keep(line, self._filter)]
            if shown:
                self.query_one(Log).write_lines(shown)
        if self.dropped != dropped:
            self._status()
