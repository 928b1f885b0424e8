"""A session over one deployment: its transports, HTTP client, orchestrator and telemetry, wired
once for both the console and the headless verbs. The console starts it (adopt, then keep
watching) and sends it intents; a verb opens one (`async with Session(plan) as session`), does
one thing and closes it. Nothing here knows about the UI."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from .apikey import read_api_key
from .bundle import MAX_BYTES, Archive, Held, Progress, Redactor, Window, bundle_name, make_bundle, plan_secrets
from .diagnosis import LogWatch
from .hostkeys import unverified_nodes
from .httpclient import http_client
from .journal import JournalEntry, append, journal_place, now_utc
from .journal import read as read_journal
from .notify import Notifier
from .orchestrate import Orchestrator, containers
from .orchestrate.apply import Step, changes
from .orchestrate.containers import ContainerOutcome
from .orchestrate.drain import ProxyAdmin
from .orchestrate.states import SERVING, UP_STATES
from .plan import LaunchPlan, NodePlan
from .preflight import Check, run_preflight
from .preflight.chips import read_npu_ips
from .preflight.containers import check_containers
from .preflight.weights import HashProgress
from .profile.schema import Profile
from .profile.serving_rules import shortest_context
from .ranks import Rank, rank_map
from .remote import LogStore, RemoteError, RunResult, ShellTransport, Transport, scripts, transport_for
from .remote.http_routes import NodeRoutes
from .render import plan_json
from .smoke.accuracy import ANSWER_TOKENS, AccuracyRun, ItemResult, answer_budget, run_accuracy, store_accuracy
from .smoke.aisbench import run_aisbench
from .smoke.bench import BenchRun, BenchSettings, run_bench, server_process, store_run
from .smoke.client import stream_request
from .smoke.history import History, PromptRecord, state_dir
from .smoke.suite import AccuracyGate, SmokeCheck, needle_checks, probe_path, run_suite
from .smoke.sweep import SweepPoint, SweepRun, SweepSettings, run_sweep, store_sweep
from .tasks import cancel_and_wait
from .telemetry.alerts import Alert, AlertEngine, AlertRecord, alert_order, hbm_limits
from .telemetry.exporter import exposition
from .telemetry.hub import Telemetry
from .view import ServerFigures, SessionView, Snapshot

T = TypeVar("T")
BUNDLE_WINDOW_S = 2 * 3600  # an incident bundle's default window: the last two hours


class ReadOnly(RuntimeError):
    """A session opened read-only was asked to change something."""


@dataclass(frozen=True)
class CheckSettings:
    """What the profile says about checking this deployment: the model to inspect before launch,
    the needle test, the bench, the sweep."""

    profile: Profile | None = None  # its version rules judge what the nodes run
    model_path: str | None = None  # set when the profile asks for the model to be checked
    needle_tokens: int | None = None
    max_tokens: int = 64
    bench: BenchSettings = field(default_factory=BenchSettings)
    sweep: SweepSettings = field(default_factory=SweepSettings)  # the console's; `cpconsole sweep` takes flags
    accuracy_tokens: int = ANSWER_TOKENS  # an accuracy check's answer budget (accuracy.answer_budget)
    smoke_accuracy: AccuracyGate | None = None  # the profile's smoke.accuracy: one more smoke check

    @classmethod
    def of(cls, profile: Profile) -> CheckSettings:
        bench = profile.bench
        budget = answer_budget(shortest_context(profile))
        asked = profile.smoke.accuracy if profile.smoke else None
        gate = AccuracyGate(asked.dataset, asked.limit, asked.min, asked.max_tokens or budget) if asked else None
        return cls(
            profile,
            profile.model.path if profile.model.check_path else None,
            profile.smoke.needle_tokens if profile.smoke else None,
            profile.smoke.max_tokens if profile.smoke else 64,
            BenchSettings(
                bench.random_input_len, bench.random_output_len, bench.num_prompts, request_rate=bench.request_rate
            )
            if bench
            else BenchSettings(),
            accuracy_tokens=budget,
            smoke_accuracy=gate,
        )


class Session:
    def __init__(
        self,
        plan: LaunchPlan,
        transports: Mapping[str, Transport] | None = None,
        findings: tuple[str, ...] = (),
        *,
        read_only: bool = False,
        clock: Callable[[], float] = time.time,
        history: History | None = None,
        checks: CheckSettings | None = None,
        via: str = "cli",
        profile_file: str | None = None,
    ) -> None:
        self.plan = plan
        self.profile_file = profile_file  # its text goes into incident bundles
        self.via = via  # console or cli: what the journal says the actions came from
        self.checks = checks or CheckSettings()
        self.findings = findings  # the profile's warnings, as `file:line:col: …` lines
        self.unverified_host_keys = unverified_nodes(plan.nodes)  # shown on the board for as long as it runs
        self.read_only = read_only
        self.now = clock  # everything shown with an age or an uptime asks this clock
        self.alert_history: list[AlertRecord] = []  # newest last
        self.history = history or History()
        self.transports = dict(transports) if transports else {n.name: transport_for(n) for n in plan.nodes}
        self._api_key = read_api_key(plan.api_key)  # UsageError when the profile's key cannot be read
        self._routes: NodeRoutes | None = None

        def routes(pool: Callable[[str | None], httpx.AsyncHTTPTransport]) -> NodeRoutes:
            self._routes = NodeRoutes(plan.nodes, self.transports, pool)
            return self._routes

        self.http = http_client(3.0, api_key=self._api_key, route=routes)
        self.orchestrator = Orchestrator(plan, self.transports, http=self.http, api_key=self._api_key)
        self.telemetry = Telemetry(plan, self.transports, self.http, health_interval=10.0)  # the watch loop checks too
        self.alerts: list[Alert] = []
        decodes = frozenset(p.name for p in plan.processes if p.role == "decode" and p.http_port)
        self._alert_engine = AlertEngine(plan.alerts, hbm_limits(plan), decodes)
        self.log_watch = LogWatch(plan, plan.alerts.error_lines_clear_s)
        self._log_read: dict[str, tuple[LogStore, int]] = {}  # per process: the store read and the next line
        self._runs: dict[str, int | None] = {}  # per running process: the pid telemetry's figures are of
        self.restarts: dict[str, int] = {}  # per process: runs after the first this session saw
        self.npu_ips: dict[str, dict[int, str]] = {}  # per node, per chip: asked once, for the rank map
        self._tasks: list[asyncio.Task[None]] = []
        self._broken: list[Alert] = []  # background work of this session that died, as alerts
        self._bundling: asyncio.Task[None] | None = None  # alerts.bundle_on's bundle under way
        self.last_bundle: Path | None = None
        self.notifier: Notifier | None = None  # alerts reach people while the session watches (start)
        self.last_action: JournalEntry | None = None  # the journal's newest entry, whoever acted
        self.busy: str | None = None  # the intent being carried out, if any
        self.preflight_checks: list[Check] | None = None  # the last preflight's results
        self.preflight_took: float | None = None  # how long it took, in seconds
        self.preflight_running = False
        self.preflight_beside: list[str] = []  # processes that ran while it checked (their ports look taken)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Adopt what runs, then keep watching: process states, pollers, alerts."""
        self.busy = "finding what runs"
        try:
            await self.orchestrator.adopt()
        finally:
            self.busy = None
        self.notifier = Notifier(
            self.plan.profile, self.plan.notify, self.http, sender=self.orchestrator.operator, clock=self.now
        )
        self.telemetry.start_nodes()
        self._tasks = [
            # an exit shows within 2 s; health every 6 s (the telemetry pollers ask every 5 s too)
            self._background("the process watcher", self.orchestrator.watch(interval=2.0, health_interval=6.0)),
            self._background("the telemetry follower", self._follow_states()),
        ]

    def _background(self, what: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task that, should it die, says so as a critical alert rather than going quiet."""
        task = asyncio.create_task(work)

        def ended(done: asyncio.Task[None]) -> None:
            error = None if done.cancelled() else done.exception()
            if error is not None:
                self.report_failure(what, error, critical=True)

        task.add_done_callback(ended)
        return task

    def report_failure(self, what: str, error: BaseException, *, critical: bool = False) -> None:
        """Work of this session (a watcher, or an action of the console's) ended with an error: it
        stays in the alerts (critical when the watching itself stopped) rather than going quiet."""
        then = "; restart the console" if critical else ""
        message = f"{what} failed: {error!r}{then}"
        self._broken.append(Alert(f"broken:{what}", "critical" if critical else "warning", "console", message))
        self._set_alerts(self.alerts)

    async def _follow_states(self, look_elsewhere_s: float = 5.0) -> None:
        looked = time.monotonic()
        while True:
            if self.busy is None and time.monotonic() - looked >= look_elsewhere_s:
                looked = time.monotonic()  # what another console or a script started shows here too
                await self.orchestrator.notice_starts_elsewhere()
                await self._read_last_action()
            views = self.orchestrator.views
            running = [n for n, v in views.items() if v.state in UP_STATES]
            for name in running:
                if self._runs.get(name) != views[name].pid:  # a new run: nothing of the old one holds
                    if self._runs.get(name) is not None:
                        self.restarts[name] = self.restarts.get(name, 0) + 1
                    self._runs[name] = views[name].pid
                    self.telemetry.new_run(name)
            ready = [n for n, v in views.items() if v.state in SERVING]
            for name, reason in (await self.telemetry.follow(running, ready, time.time())).items():
                self.orchestrator.note_stall(name, reason)
            for name in running:
                self._read_new_lines(name)
            self._set_alerts(self._evaluate_alerts(running))
            await asyncio.sleep(1.0)

    def _read_new_lines(self, name: str) -> None:
        """A running process's lines since the last look, through the log watch. A new store (the
        process was restarted) starts afresh: what the old one's lines said no longer holds."""
        store = self.orchestrator.stores[name]
        read, seq = self._log_read.get(name, (store, 0))
        if read is not store:
            self.log_watch.forget(name)
            seq = 0
        start, lines = store.since(seq)
        self._log_read[name] = (store, start + len(lines))
        self._watch_lines(name, lines)

    def _watch_lines(self, name: str, lines: list[str]) -> None:
        serving = self.orchestrator.views[name].state in SERVING
        self.log_watch.feed(name, lines, serving=serving, at=self.now())

    def _evaluate_alerts(self, running: list[str]) -> list[Alert]:
        readings = self.telemetry.readings(running)
        stalled = {n: v.reason for n, v in self.orchestrator.views.items() if v.state == "stalled"}
        alerts = self._alert_engine.evaluate(self.now(), npu=readings.npu, metrics=readings.metrics, stalled=stalled)
        if self.plan.alerts.error_lines:
            alerts += self.log_watch.alerts(self.now())
        return sorted(alerts, key=alert_order)

    async def alert_round(self) -> list[Alert]:
        """One round of telemetry (npu-smi on every node, /metrics of the running servers) through
        the alert rules, for a verb that looks once; a source that fails is an alert of its own."""
        running = self.running
        results = await self.telemetry.poll_once(running)
        await self.read_recent_lines()
        failed = [
            Alert(f"source:{r.source}", "warning", r.source.split("@")[-1], f"{r.source}: {r.error}")
            for r in results
            if r.error
        ]
        return self._evaluate_alerts(running) + failed

    async def read_recent_lines(self) -> None:
        """The last lines of every running process, read from its node, through the log watch (for
        a verb that looks once: the console reads them as they arrive)."""
        running = self.running
        for name, lines in zip(running, await asyncio.gather(*map(self.orchestrator.last_lines, running)), strict=True):
            self._watch_lines(name, lines)

    def _set_alerts(self, alerts: list[Alert], keep: int = 500) -> None:
        """The alerts of this round: an alert not active before is raised, an active one missing
        cleared (an episode, in the history); the notifier hears of each once."""
        extra = [*self._broken, *(self.notifier.problems() if self.notifier else ())]
        alerts = [*alerts, *(a for a in extra if a not in alerts)]
        now = self.now()
        active = {r.alert.key: r for r in self.alert_history if r.cleared_at is None}
        raised = []
        for alert in alerts:
            if alert.key in active:
                active[alert.key].alert = alert  # its latest word: a count, the last line seen
            else:
                self.alert_history.append(AlertRecord(alert, now))
                raised.append(alert)
        keys = {a.key for a in alerts}
        cleared = []
        for key, record in active.items():
            if key not in keys:
                record.cleared_at = now
                cleared.append(record.alert)
        del self.alert_history[:-keep]
        self.alerts = alerts
        if self._tasks and _asks_bundle(self.plan.alerts.bundle_on, raised) and not self._bundling:
            self._bundling = self._background("the incident bundle", self._auto_bundle())
        if self.notifier:
            self.notifier.offer(raised, cleared)

    async def exec(
        self, nodes: Sequence[str], argv: Sequence[str], timeout: float = 30.0
    ) -> dict[str, RunResult | str]:
        """Run a command on nodes at once, its output (stdout and stderr as produced) cut at
        scripts.OUTPUT_LIMIT; a node that fails answers with the error text."""
        if self.read_only:
            raise ReadOnly("read-only session: exec is off")

        async def one(node: str) -> RunResult | str:
            try:
                return await self.transports[node].run(scripts.capped(argv), timeout=timeout)
            except (RemoteError, OSError) as exc:
                return str(exc) or type(exc).__name__

        async def every() -> dict[str, RunResult | str]:
            return dict(zip(nodes, await asyncio.gather(*(one(n) for n in nodes)), strict=True))

        return await self.journaled(
            f"exec {shlex.join(argv)}"[:200],
            nodes,
            every(),
            ok=lambda results: all(not isinstance(r, str) and r.ok for r in results.values()),
        )

    async def ask(
        self,
        target: str,
        prompt: str,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        on_text: Callable[[str], None] | None = None,
    ) -> PromptRecord:
        """One streamed chat request to a server (the proxy by default), measured, kept in the history.
        Never raises for what the server does: errors come back in the record."""
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.now()))
        result = await stream_request(
            self.http,
            self.plan.process(target).base_url,
            model=self.plan.model_name,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=temperature,
            on_text=on_text,
        )
        record = PromptRecord.of(at, self.plan.profile, target, prompt, max_tokens, temperature, result)
        with contextlib.suppress(OSError):  # a read-only home must not cost the answer
            self.history.append(record)
        return record

    async def probe_path(self) -> list[SmokeCheck]:
        return await probe_path(self.plan, self.http)

    async def needle_sweep(self, target: str, depths: Sequence[float] = (0.1, 0.5, 0.9)) -> list[SmokeCheck]:
        """The needle test at each depth, with the profile's prompt length (or a 4k one)."""
        return await needle_checks(
            self.plan,
            self.http,
            target=target,
            tokens=self.checks.needle_tokens or 4096,
            depths=depths,
            max_tokens=self.checks.max_tokens,
        )

    async def smoke(
        self, target: str, *, needle_tokens: int | None, depths: Sequence[float], max_tokens: int
    ) -> list[SmokeCheck]:
        """Health, probe path, a completion, the needle(s) and the profile's quick accuracy check
        against one HTTP process."""
        return await run_suite(
            self.plan,
            self.http,
            target=target,
            needle_tokens=needle_tokens,
            depths=depths,
            max_tokens=max_tokens,
            accuracy=self.checks.smoke_accuracy,
        )

    async def bench(
        self, on_line: Callable[[str], object], *, node: str | None = None, settings: BenchSettings | None = None
    ) -> BenchRun:
        """`vllm bench serve` (the profile's settings unless given) on a node (the first API
        server's unless given), its output line by line to `on_line`; the run is stored with the
        earlier ones."""
        if self.read_only:
            raise ReadOnly("read-only session: bench is off")
        settings = settings or self.checks.bench
        transport = self._streaming(node or server_process(self.plan).node)

        async def run() -> BenchRun:
            async for item in run_bench(self.plan, transport, settings, api_key=self._api_key):
                if isinstance(item, BenchRun):
                    with contextlib.suppress(OSError):
                        store_run(item)
                    return item
                on_line(item)
            raise RemoteError(transport.node, "the bench ended without a result")

        return await self.journaled("bench", (transport.node,), run(), ok=lambda done: done.summary.failed == 0)

    def _streaming(self, node: str) -> ShellTransport:
        """The node's transport, for a command read as it runs (bench, AISBench)."""
        transport = self.transports[node]
        if not isinstance(transport, ShellTransport):
            raise RemoteError(transport.node, "this transport cannot stream a command")
        return transport

    async def sweep(
        self, settings: SweepSettings, on_point: Callable[[SweepPoint], object] = lambda _: None
    ) -> SweepRun:
        """The context-length sweep through `settings.target`, each length's point to `on_point` as it
        is measured; the run is stored with the earlier ones."""
        if self.read_only:
            raise ReadOnly("read-only session: sweep is off")

        async def run() -> SweepRun:
            done = await run_sweep(self.plan, self.http, settings, on_point=on_point)
            with contextlib.suppress(OSError):
                store_sweep(done)
            return done

        return await self.journaled("sweep", (settings.target,), run(), ok=lambda done: done.complete)

    async def accuracy(
        self,
        *,
        dataset: str,
        target: str,
        limit: int | None,
        max_tokens: int,
        on_item: Callable[[ItemResult, int, int], None] = lambda *_: None,
    ) -> AccuracyRun:
        """The built-in accuracy check through `target`, each item's result to `on_item`; the run is
        stored with the earlier ones (a failed request is a wrong answer, never an exception)."""
        if self.read_only:
            raise ReadOnly("read-only session: accuracy is off")

        async def run() -> AccuracyRun:
            done = await run_accuracy(
                self.plan,
                self.http,
                dataset=dataset,
                target=target,
                limit=limit,
                max_tokens=max_tokens,
                on_item=on_item,
            )
            with contextlib.suppress(OSError):
                store_accuracy(done)
            return done

        return await self.journaled(f"accuracy {dataset}", (target,), run(), ok=lambda done: bool(done.samples))

    async def aisbench(
        self, on_line: Callable[[str], object], *, dataset: str, target: str, limit: int | None, max_out_len: int
    ) -> AccuracyRun:
        """AISBench (the guide's accuracy tool) where the API server runs, against `target`, its
        output line by line to `on_line`; the run is stored beside the built-in check's. Missing
        when AISBench or the dataset is not there (nothing started)."""
        if self.read_only:
            raise ReadOnly("read-only session: accuracy is off")
        transport = self._streaming(server_process(self.plan).node)

        async def run() -> AccuracyRun:
            async for item in run_aisbench(
                self.plan,
                transport,
                dataset=dataset,
                target=target,
                limit=limit,
                max_out_len=max_out_len,
                api_key=self._api_key,
            ):
                if isinstance(item, AccuracyRun):
                    with contextlib.suppress(OSError):
                        store_accuracy(item)
                    return item
                on_line(item)
            raise RemoteError(transport.node, "AISBench ended without a result")

        return await self.journaled(
            f"accuracy {dataset} (AISBench)", (target,), run(), ok=lambda done: bool(done.samples)
        )

    async def _intent(
        self, label: str, verb: str, targets: Sequence[str], action: Callable[[], Awaitable[bool]]
    ) -> bool:
        if self.read_only:
            raise ReadOnly(f"read-only session: {label} is off")
        self.busy = label
        try:
            return await self.journaled(verb, targets, action())
        finally:
            self.busy = None

    async def journaled(
        self,
        verb: str,
        targets: Sequence[str],
        work: Awaitable[T],
        ok: Callable[[T], bool] = lambda done: done is not False,
    ) -> T:
        """Run an action and append it to the deployment's journal, however it ends. A journal that
        cannot be written does not stop the action: it is said, as an alert."""
        started, at, result = time.monotonic(), now_utc(), "error"
        try:
            done = await work
            result = "ok" if ok(done) else "failed"
            return done
        except Exception as exc:
            result = f"error: {exc}"[:300]
            raise
        finally:
            entry = JournalEntry(
                at,
                self.orchestrator.operator,
                self.via,
                verb,
                tuple(targets),
                self.plan.digest,
                result,
                round(time.monotonic() - started, 3),
            )
            self.last_action = entry
            node, path = journal_place(self.plan)
            try:
                await append(self.transports[node], path, entry)
            except (RemoteError, OSError) as exc:
                self.report_failure("writing the journal", exc)

    async def _read_last_action(self) -> None:
        """Who did what last, from the journal (another operator's action shows on the board too);
        a journal that cannot be read leaves the last one known."""
        with contextlib.suppress(RemoteError, OSError):
            entries = await self.journal(1)
            if entries:
                self.last_action = entries[-1]

    async def journal(self, last: int = 50) -> list[JournalEntry]:
        """The deployment's last journal entries, oldest first."""
        node, path = journal_place(self.plan)
        return await read_journal(self.transports[node], path, last)

    async def preflight(
        self, *, hash_weights: bool = False, hashed: Callable[[HashProgress], None] = lambda _: None
    ) -> list[Check]:
        """Every preflight check on every node; the results stay on the session. `hash_weights`:
        every shard's sha256 too, `hashed` hearing the bytes read."""
        started = time.monotonic()
        self.preflight_running, self.preflight_beside = True, self.running
        try:
            checks = await self.journaled(
                "preflight",
                (),
                run_preflight(
                    self.plan,
                    self.transports,
                    model_path=self.checks.model_path,
                    hash_weights=hash_weights,
                    hashed=hashed,
                    profile_warnings=self.findings,
                    profile=self.checks.profile,
                ),
                ok=lambda found: not any(c.status == "FAIL" for c in found),
            )
        finally:
            self.preflight_running = False
        self.preflight_checks, self.preflight_took = checks, time.monotonic() - started
        return checks

    async def container_checks(self) -> list[Check]:
        """Each container of the profile against what it declares, every node at once."""
        return await check_containers(self.plan, self.transports)

    def http_routes(self) -> dict[str, str]:
        """How cpconsole's HTTP reaches each node's servers: direct, ssh, or auto (not tried yet)."""
        return self._routes.shown() if self._routes is not None else {}

    async def create_containers(
        self, progress: Callable[[containers.PullProgress], None] = lambda _: None
    ) -> list[ContainerOutcome]:
        """The profile's containers with an image that are not there yet: pulled on every node at
        once (`progress` hears of each layer), then created (journaled)."""
        if self.read_only:
            raise ReadOnly("read-only session: containers create is off")
        work = containers.create(self.plan, self.transports, progress=progress)
        return await self.journaled("containers create", self.container_targets(), work, ok=_all_done)

    async def remove_containers(self) -> list[ContainerOutcome]:
        """The profile's containers with an image, removed — none in which its processes run."""
        if self.read_only:
            raise ReadOnly("read-only session: containers remove is off")
        await self.orchestrator.adopt()
        work = containers.remove(self.plan, self.transports, self.running)
        return await self.journaled("containers remove", self.container_targets(), work, ok=_all_done)

    def container_targets(self) -> list[str]:
        """The containers `containers create` and `remove` act on: those with an image."""
        return [f"{c.node}/{c.name}" for c in self.plan.containers if c.image]

    async def up(self) -> bool:
        return await self._intent("starting", "up", (), self.orchestrator.up)

    async def down(self) -> bool:
        return await self._intent("stopping", "down", (), self.orchestrator.down)

    async def restart(self, target: str) -> bool:
        return await self._intent(
            f"restarting {target}", "restart", (target,), lambda: self.orchestrator.restart(target)
        )

    async def apply_plan(self) -> list[Step]:
        """What the profile asks of what runs, as `apply`'s steps (read from the nodes and from
        cpconsole's proxy, when it serves)."""
        await self.orchestrator.adopt()
        proxy = next((p for p in self.plan.processes if p.role == "proxy"), None)
        serving = proxy is not None and self.orchestrator.views[proxy.name].state in UP_STATES
        routed = await ProxyAdmin(self.plan, self.transports, self.http).routed() if serving else None
        return changes(self.plan, self.orchestrator.views, self.orchestrator.removed, routed)

    async def apply(self, steps: Sequence[Step]) -> bool:
        return await self._intent(
            "applying the profile", "apply", [s.target for s in steps], lambda: self.orchestrator.apply(steps)
        )

    async def bundle(
        self,
        out: Path,
        *,
        window: Window | None = None,
        max_bytes: int = MAX_BYTES,
        progress: Progress | None = None,
    ) -> Archive:
        """An incident bundle of the deployment as it is now, written to `out` (docs/bundle.md);
        `window` (default the last two hours) bounds the plogs, the journal and the alerts."""
        made_at = self.now()
        window = window or Window(made_at - BUNDLE_WINDOW_S, made_at)
        await self.orchestrator.adopt()
        if not self._tasks:  # a verb: one round of telemetry and alerts, as `status` reads them
            self._set_alerts(await self.alert_round())
        try:
            journal = await self.journal(500)
        except (RemoteError, OSError):
            journal = []
        held = Held(
            dict(self.orchestrator.views),
            list(self.alert_history),
            journal,
            exposition(self.snapshot()),
            {node: list(samples) for node, samples in self.telemetry.npu_history.items()},
        )
        text = self._profile_text()
        return await make_bundle(
            self.plan,
            self.transports,
            held,
            text,
            Redactor(plan_secrets(self.plan, self._api_key)),
            window,
            out,
            made_by=self.orchestrator.operator,
            made_at=made_at,
            max_bytes=max_bytes,
            progress=progress,
        )

    def _profile_text(self) -> str:
        if self.profile_file is None:
            return "# the profile's file was not given to this session; the plan follows\n" + plan_json(self.plan)
        try:
            return Path(self.profile_file).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"# {self.profile_file} could not be read: {exc.strerror}\n" + plan_json(self.plan)

    async def keep_bundle(self) -> Path:
        """A bundle of now into the state directory (bundles/PROFILE/), the profile's newest
        `alerts.bundle_keep` kept: what the console's `B` and alerts.bundle_on write."""
        where = state_dir() / "bundles" / self.plan.profile
        where.mkdir(parents=True, exist_ok=True)
        out = where / (bundle_name(self.plan, self.now()) + ".tar.gz")
        await self.bundle(out)
        self.last_bundle = out
        for old in sorted(where.glob("*.tar.gz"))[: -self.plan.alerts.bundle_keep]:
            old.unlink(missing_ok=True)
        return out

    async def _auto_bundle(self) -> None:
        try:
            await self.keep_bundle()
        finally:
            self._bundling = None

    def snapshot(self) -> Snapshot:
        """What a metrics scrape shows: the plan, the view now, the alerts raised."""
        return Snapshot(self.plan, self.view(), tuple(self.alerts), self.rank_map(), dict(self.restarts))

    def view(self) -> SessionView:
        """What to show, frozen now."""
        telemetry = self.telemetry
        return SessionView(
            now=self.now(),
            processes=dict(self.orchestrator.views),
            npu={node: poller.latest for node, poller in telemetry.npu.items()},
            npu_history={node: tuple(samples) for node, samples in telemetry.npu_history.items()},
            servers={name: self._figures(name) for name in telemetry.metrics},
        )

    def _figures(self, name: str) -> ServerFigures:
        telemetry = self.telemetry
        scrape, window = telemetry.metrics[name].latest, telemetry.windows[name]
        if self.plan.process(name).role == "proxy":
            return ServerFigures.of_proxy(scrape, window, telemetry.class_windows.get(name, {}))
        return ServerFigures.of(scrape, window, telemetry.probes_in_window(name), telemetry.busy(name))

    async def ranks(self) -> list[Rank]:
        """Every rank with its place, its chip's NPU IP and its state."""
        await self.learn_npu_ips()
        return self.rank_map()

    async def learn_npu_ips(self) -> None:
        """Each node's chips' NPU IPs, asked once (a node that does not answer is not asked again:
        its ranks show no IP)."""
        missing = [n for n in self.plan.nodes if n.chips and n.name not in self.npu_ips]

        async def ask(node: NodePlan) -> None:
            self.npu_ips[node.name] = {}
            with contextlib.suppress(RemoteError):
                self.npu_ips[node.name] = await read_npu_ips(node, self.transports[node.name])

        await asyncio.gather(*map(ask, missing))

    def rank_map(self) -> list[Rank]:
        """Every rank as the processes and the log watch tell it now (NPU IPs as learnt so far)."""
        return rank_map(self.plan, self.orchestrator.views, self.log_watch.findings(self.now()), self.npu_ips)

    def log(self, process: str) -> LogStore:
        """The process's log as read so far (a ring of its last lines), to read from."""
        return self.orchestrator.stores[process]

    @property
    def running(self) -> list[str]:
        """Processes that are up in any sense (what quitting would leave behind)."""
        return [n for n, v in self.orchestrator.views.items() if v.state in UP_STATES]

    async def close(self) -> None:
        """Leaving the console stops nothing that runs on the nodes."""
        await cancel_and_wait(*self._tasks)
        await self.telemetry.stop()
        if self.notifier:
            await self.notifier.close()
        await self.orchestrator.close()
        await self.http.aclose()
        await asyncio.gather(*(t.close() for t in self.transports.values()), return_exceptions=True)


def _asks_bundle(bundle_on: str | None, raised: Sequence[Alert]) -> bool:
    """Whether a raised alert is grave enough for alerts.bundle_on (critical, or warning and up)."""
    grave = {"critical": {"critical"}, "warning": {"critical", "warning"}}.get(bundle_on or "", set())
    return any(a.severity in grave for a in raised)


def _all_done(outcomes: list[ContainerOutcome]) -> bool:
    return all(o.done for o in outcomes)
