"""The console: a small App that owns a Session, switches screens, turns keys into intents."""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Coroutine, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import Input, TextArea
from textual.worker import Worker

from ..core import cmdline as cmd
from ..core.names import METRICS_TOKEN_ENV
from ..core.notify import Notification
from ..core.orchestrate.drain import interrupts_service
from ..core.orchestrate.lock import DeploymentBusy
from ..core.remote import RemoteError
from ..core.safetext import terminal_safe
from ..core.session import ReadOnly, Session
from .keymap import keymap_path, load_keymap
from .keys import DEFAULT_KEYS, keys_now
from .places import PLACE, PLACES
from .screens.base import SessionScreen, said_if_failed
from .screens.board import BoardScreen
from .screens.details import DetailsScreen
from .screens.dialogs import ConfirmScreen, ExecScreen, HelpScreen, preflight_first_screen, quit_screen
from .screens.logs import LogsScreen
from .screens.ranks import RanksScreen
from .widgets.command_line import CommandLine


class ProcessCommands(Provider):
    """Command palette entries per process: details, logs, restart."""

    def _entries(self) -> list[tuple[str, str, str]]:
        app = self.app
        assert isinstance(app, ConsoleApp)
        entries = []
        for proc in app.session.plan.processes:
            entries += [
                (f"details {proc.name}", f"details({proc.name!r})", f"{proc.role} on {proc.node}"),
                (f"logs {proc.name}", f"logs({proc.name!r})", f"follow {proc.name}'s log"),
                (f"restart {proc.name}", f"restart({proc.name!r})", f"restart {proc.instance or proc.name} (asks)"),
            ]
        return entries

    async def discover(self) -> Hits:
        for title, action, help_text in self._entries():
            yield DiscoveryHit(title, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self.app.run_action, action), help=help_text)


class ConsoleApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "cpconsole"
    COMMANDS = App.COMMANDS | {ProcessCommands}
    BINDINGS = [
        Binding(DEFAULT_KEYS["help"], "help", "Help", id="help"),
        # a priority binding: the command line opens before the keys typed after `:` are handed
        # to the board, so a burst (`:up⏎` pasted or typed fast) lands in it whole
        Binding(DEFAULT_KEYS["command-line"], "command_line", "Cmd", id="command-line", priority=True),
        *(Binding(p.key, f"show({p.name!r})", p.label, show=p.in_footer, id=p.binding_id) for p in PLACES),
        Binding(DEFAULT_KEYS["logs-of-row"], "logs_of_selected", "Logs of row", show=False, id="logs-of-row"),
        Binding(DEFAULT_KEYS["up"], "up", "Up", id="up"),
        Binding(DEFAULT_KEYS["down"], "down", "Down", id="down"),
        Binding(DEFAULT_KEYS["restart"], "restart", "Restart", id="restart"),
        Binding(DEFAULT_KEYS["apply"], "apply", "Apply", show=False, id="apply"),
        Binding(DEFAULT_KEYS["bundle"], "bundle", "Bundle", show=False, id="bundle"),
        Binding(DEFAULT_KEYS["back"], "show('board')", "Back", show=False, id="back"),
        Binding(DEFAULT_KEYS["quit"], "quit", "Quit", id="quit"),
    ]

    def __init__(
        self, session: Session, *, live: bool = True, refresh_s: float = 1.0, metrics: socket.socket | None = None
    ) -> None:
        super().__init__()
        self.session = session
        self.metrics = metrics  # a bound socket to serve the session's view to Prometheus on
        self.live = live
        self.refresh_s = refresh_s
        self.sub_title = session.plan.profile + ("  [read-only]" if session.read_only else "")
        self.board = BoardScreen(session)
        self._preflight_offered = False
        self.notices: deque[str] = deque(maxlen=200)  # what the toasts said this session, newest last
        self.heard: deque[Notification] = deque(maxlen=200)  # alerts raised and cleared, as notified
        self._heard_seq = 0
        self.keys = dict(DEFAULT_KEYS)  # after keymap.yaml, once mounted

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        # what a node or server said may be in it: never markup, never a control character
        message = terminal_safe(message)
        self.notices.append(message)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    async def on_mount(self) -> None:
        self._load_keymap()
        await self.push_screen(self.board)
        self.refresh_screens()
        self.set_interval(self.refresh_s, self.refresh_screens)
        if self.live:  # finding what runs takes a round trip per process: keys are answered meanwhile
            self.work(self._start_session(), group="finding what runs", exclusive=False)
        if self.metrics is not None:
            from ..core.telemetry.exporter import metrics_app, serve_metrics  # a web server only when asked

            app = metrics_app(self.session.snapshot, os.environ.get(METRICS_TOKEN_ENV) or None)
            self.work(serve_metrics(app, self.metrics), group="metrics", exclusive=False)

    async def _start_session(self) -> None:
        await self.session.start()
        self.refresh_screens()

    def work(self, job: Coroutine[Any, Any, object], *, group: str, exclusive: bool = True) -> None:
        """Run an action in the background: a failure is said and kept in the alerts, never fatal."""
        self.run_worker(job, group=group, exclusive=exclusive, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        said_if_failed(self, self.session, event)

    def _load_keymap(self) -> None:
        owners: list[type[DOMNode]] = [type(self), BoardScreen, DetailsScreen, *(p.screen for p in PLACES if p.screen)]
        ids = [b.id for owner in owners for b in owner.BINDINGS if isinstance(b, Binding) and b.id]
        keymap, problems = load_keymap(keymap_path(), ids)
        for problem in problems:
            self.notify(problem, severity="warning", timeout=10)
        if keymap:
            self.set_keymap(keymap)
        self.keys = keys_now(keymap)

    def refresh_screens(self) -> None:
        self._hear_notifications()
        screen = self.screen
        if isinstance(screen, SessionScreen):
            screen.refresh_from(self.session)

    def _hear_notifications(self) -> None:
        """The bell for each alert raised since the last look (the board lists it; tmux and the
        webhooks are told by the session's notifier)."""
        notifier = self.session.notifier
        if notifier is None:
            return
        self._heard_seq, notes = notifier.since(self._heard_seq)
        self.heard.extend(notes)
        if notifier.settings.bell and any(note.state == "firing" for note in notes):
            self.bell()

    # ------------------------------------------------------------ screens

    def _switch(self, screen: Screen[None]) -> None:
        """One screen above the board at a time; a modal on top is closed first."""
        while self.screen is not self.board:
            self.pop_screen()
        if screen is not self.board:
            self.push_screen(screen)

    def action_show(self, name: str) -> None:
        """Go to a screen of the table (places.PLACES)."""
        kind = PLACE[name].screen
        if kind is None:
            self._switch(self.board)
        elif kind is LogsScreen:
            self.action_logs()
        elif type(self.screen) is not kind:
            self._switch(kind(self.session))

    def action_logs(self, process: str | None = None) -> None:
        if isinstance(self.screen, LogsScreen) and self.screen.process == process:
            return
        self._switch(LogsScreen(self.session, process))

    def action_ranks(self, instance: str | None = None) -> None:
        self._switch(RanksScreen(self.session, instance))

    def action_details(self, process: str) -> None:
        self._switch(DetailsScreen(self.session, process))

    def _selected(self) -> str | None:
        if isinstance(self.screen, DetailsScreen | LogsScreen):
            return self.screen.process
        return self.board.selected if self.screen is self.board else None

    def action_logs_of_selected(self) -> None:
        if self.screen is self.board:
            self.action_logs(self.board.selected)

    def action_help(self) -> None:
        """The keys that work here now (remapped ones as remapped), each with its binding id."""
        ours = (self.screen, self)  # the screen's keys, then the app's; a table's cursor keys go without saying
        found = [a for a in self.screen.active_bindings.values() if a.binding.description and a.node in ours]
        shown = [a.binding for a in sorted(found, key=lambda a: ours.index(a.node))]
        keys = [(self.get_key_display(b), b.description, b.id or "") for b in shown]
        self.push_screen(HelpScreen(f"{type(self.screen).__name__.removesuffix('Screen')} — keys", keys))

    # ------------------------------------------------------------ intents

    def _refuse_if_read_only(self) -> bool:
        if self.session.read_only:
            self.notify("read-only console: nothing is started or stopped", severity="warning")
        return self.session.read_only

    def _run_intent(self, label: str, work: Coroutine[Any, Any, bool]) -> None:
        async def run() -> None:
            try:
                ok = await work
            except (ReadOnly, DeploymentBusy) as exc:
                self.notify(str(exc), severity="warning", timeout=10)
                return
            except RemoteError as exc:
                self.notify(f"{label}: {exc}", severity="error", timeout=10)
                return
            self.notify(
                f"{label}: {'done' if ok else 'failed, see the board'}", severity="information" if ok else "error"
            )

        self.work(run(), group="intent")

    def action_up(self) -> None:
        if self._refuse_if_read_only():
            return
        if self.session.preflight_checks is not None or self.session.running or self._preflight_offered:
            self._start()
            return
        self._preflight_offered = True  # offered once a session; `u` again starts without asking

        def answered(choice: str | None) -> None:
            if choice == "start":
                self._start()
            elif choice == "preflight":
                self.action_show("preflight")
                self.work(self._preflight_then_start(), group="preflight")

        self.push_screen(preflight_first_screen(), answered)

    def _start(self) -> None:
        self._run_intent("up", self.session.up())
        self.notify("starting what is not running")

    async def _preflight_then_start(self) -> None:
        checks = await self.session.preflight()
        failed = sum(c.status == "FAIL" for c in checks)
        if failed:
            self.notify(
                f"preflight: {failed} failed — nothing started; fix them, or press u to start anyway",
                severity="error",
                timeout=10,
            )
        else:
            self._start()

    def action_down(self) -> None:
        if self._refuse_if_read_only():
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._run_intent("down", self.session.down())
                self.notify("stopping every process")

        self.push_screen(ConfirmScreen("Stop every process of this deployment?", yes="Stop all"), answered)

    def action_restart(self, target: str | None = None) -> None:
        target = target or self._selected()
        if not target or self._refuse_if_read_only():
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._run_intent(f"restart {target}", self.session.restart(target))
                self.notify(f"restarting {target}'s instance")

        why = interrupts_service(self.session.plan, target)
        # another instance of its role serves meanwhile (drained first), or the operator is told it will not
        question = f"Restart {target}'s whole instance (every rank, in order)?"
        if why:
            question += f"\nThe service is interrupted: {why}."
        self.push_screen(ConfirmScreen(question, "Restart"), answered)

    def action_bundle(self) -> None:
        """An incident bundle of now (docs/bundle.md), written beside the earlier ones."""

        async def write() -> None:
            self.notify("writing an incident bundle …")
            path = await self.session.keep_bundle()
            self.notify(f"incident bundle written: {path}", timeout=30)

        self.work(write(), group="bundle", exclusive=True)

    def action_apply(self) -> None:
        """What the edited profile asks of what runs, shown and asked; then taken step by step."""
        if self._refuse_if_read_only():
            return

        async def ask() -> None:
            steps = await self.session.apply_plan()
            if not steps:
                self.notify("nothing to apply: what runs is what the profile says")
                return
            listed = "\n".join(f"{i}. {step.text}" for i, step in enumerate(steps, 1))
            question = f"Apply the profile, one instance at a time?\n{listed}"
            stopping = [
                w for s in steps if s.action == "restart" and (w := interrupts_service(self.session.plan, s.target))
            ]
            if stopping:
                question += f"\nThe service is interrupted: {stopping[0]}."

            def answered(yes: bool | None) -> None:
                if yes:
                    self._run_intent("apply", self.session.apply(steps))
                    self.notify(f"applying the profile: {len(steps)} step(s)")

            await self.push_screen(ConfirmScreen(question, "Apply"), answered)

        self.work(ask(), group="apply", exclusive=True)

    def action_exec(self, nodes: tuple[str, ...], argv: tuple[str, ...]) -> None:
        if self._refuse_if_read_only():
            return

        async def run() -> None:
            results = await self.session.exec(nodes, argv)
            await self.push_screen(ExecScreen(argv, results))

        self.work(run(), group="exec", exclusive=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`:` is the command line's everywhere but where text is typed (a prompt, a search)."""
        return not (action == "command_line" and isinstance(self.focused, Input | TextArea))

    def action_command_line(self) -> None:
        self.push_screen(CommandLine(self.session.plan), self._run_command)

    def _run_command(self, text: str | None) -> None:
        if not text:
            return
        try:
            command = cmd.parse_command(text, self.session.plan)
        except cmd.CommandError as exc:
            self.notify(str(exc), severity="error")
            return
        match command:
            case cmd.Up():
                self.action_up()
            case cmd.Down():
                self.action_down()
            case cmd.Restart(target):
                self.action_restart(target)
            case cmd.ShowLogs(process):
                self.action_logs(process)
            case cmd.ShowDetails(process):
                self.action_details(process)
            case cmd.Exec(nodes, argv):
                self.action_exec(nodes, argv)
            case cmd.ShowScreen(name):
                self.action_show(name)
            case cmd.Help():
                self.action_help()
            case cmd.Quit():
                self.call_later(self.action_quit)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Up", "Start what is not running", self.action_up)
        yield SystemCommand("Down", "Stop every process (asks)", self.action_down)
        for place in PLACES:
            yield SystemCommand(place.label, place.description, partial(self.action_show, place.name))

    # ------------------------------------------------------------ leaving

    async def action_quit(self) -> None:
        running = self.session.running
        if not running or self.session.read_only:
            self.exit(0)
            return

        def answered(choice: str | None) -> None:
            if choice == "leave":
                self.exit(0)
            elif choice == "stop":
                self.notify("stopping every process, then quitting")

                async def stop_then_exit() -> None:
                    ok = await self.session.down()
                    self.exit(0 if ok else 1)

                self.work(stop_then_exit(), group="intent")

        self.push_screen(quit_screen(running), answered)

    async def on_unmount(self) -> None:
        await self.session.close()
