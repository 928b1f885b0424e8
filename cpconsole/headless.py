"""The headless verbs for scripts: up, down, restart, status, logs, exec, smoke, preflight, bench,
sweep, watch, alert-test, ls.
Each opens the same Session the console uses, does one thing, prints what `reports` renders and
returns an exit code (see exit_codes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from . import reports, results
from .core.bundle import Archive, Window, bundle_name
from .core.httpclient import http_client
from .core.inventory import Listed, listed_profiles, running_of
from .core.journal import JournalEntry
from .core.names import METRICS_TOKEN_ENV
from .core.notify import Notifier
from .core.orchestrate import Orchestrator, orphans
from .core.orchestrate.apply import changes
from .core.orchestrate.containers import ContainerOutcome, PullProgress
from .core.orchestrate.drain import interrupts_service
from .core.orchestrate.lock import DeploymentBusy
from .core.orchestrate.model import Event, StateChanged, operator
from .core.orchestrate.states import DOWN_STATES, FOUND
from .core.plan import LaunchPlan
from .core.preflight import Check
from .core.preflight.weights import HashProgress
from .core.remote import RemoteError, RunResult, ShellTransport, TailChunk, TailEvent, Transport, scripts
from .core.remote.logstore import Lines
from .core.safetext import terminal_safe
from .core.session import CheckSettings, Session
from .core.smoke.accuracy import AccuracyRun, ItemResult, load_accuracy
from .core.smoke.aisbench import NotStarted
from .core.smoke.bench import BenchRun, BenchSettings, load_runs, stored_path
from .core.smoke.suite import SmokeCheck
from .core.smoke.sweep import SweepPoint, SweepRun, SweepSettings, load_sweeps, short_length
from .core.tasks import cancel_and_wait
from .core.telemetry.alerts import Alert
from .core.telemetry.exporter import bind, metrics_app, serve_metrics
from .exit_codes import EXIT_BUSY, EXIT_FAILED, EXIT_NOT_READY, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, exit_code_for
from .results import Format


async def _narrate(orch: Orchestrator, *, notices_only: bool) -> None:
    queue = orch.events.subscribe()
    adopting: set[str] = set()
    while True:
        event = await queue.get()
        if not _is_news(event, adopting):
            continue
        sys.stderr.write(reports.event_line(event, time.strftime("%H:%M:%S"), notices_only=notices_only))
        sys.stderr.flush()


def _is_news(event: Event, adopting: set[str]) -> bool:
    """Whether a verb tells this event as it happens. Adoption's moves only tell what was there
    already — found, then its health read once — and the table printed at the end shows that."""
    if not isinstance(event, StateChanged):
        return True
    if event.trigger in FOUND:
        adopting.add(event.process)
        return False
    if event.process in adopting:
        adopting.discard(event.process)
        return event.trigger != "answering"
    return True


async def _run_verb(
    plan: LaunchPlan,
    as_json: bool,
    action: Callable[[Orchestrator], Coroutine[Any, Any, bool]],
    *,
    narrate: bool = True,
    judge: Literal["action", "started", "status"] = "started",
    journal: tuple[str, Sequence[str]] | None = None,
    concerns: Sequence[str] = (),
) -> int:
    """Run an action and print the processes after it (`concerns`: the processes it is about,
    default all). Judged by: `action` its own success only
    (down: nothing left running); `started` also any process broken or unreachable; `status` the
    whole deployment with one round of alerts (exit_code_for)."""
    alerts: list[Alert] = []
    async with Session(plan) as session:
        orch = session.orchestrator
        narrator = asyncio.create_task(_narrate(orch, notices_only=as_json or not narrate))
        try:
            ok = await (session.journaled(*journal, action(orch)) if journal else action(orch))
        except DeploymentBusy as exc:
            print(f"cpconsole: {exc}; nothing was changed", file=sys.stderr)
            return EXIT_BUSY
        finally:
            await asyncio.sleep(0)  # the last events reach the narrator
            narrator.cancel()
        views = list(orch.views.values())
        if judge == "status":
            alerts = await session.alert_round()
        removed = list(orch.removed.values())
        routes = session.http_routes()
        # an edited profile half applied: what `apply` would still do (its routes left aside: the proxy is not asked)
        running = any(v.state not in DOWN_STATES for v in views)
        pending = (
            [s.text for s in changes(plan, orch.views, orch.removed, None)] if judge == "status" and running else []
        )
        if as_json:
            sys.stdout.write(reports.status_json(plan, views, alerts, removed, routes, pending))
        else:
            tails = {v.name: orch.stores[v.name].last(50) for v in views if v.state == "failed"}
            sys.stdout.write(reports.status_text(plan, views, alerts, tails, removed, routes, pending))
    if judge == "status":
        return exit_code_for(views, alerts)
    unknown = [v for v in views if v.state == "unknown" and (not concerns or v.name in concerns)]
    if judge == "action" and unknown:  # a stop cannot be known done where a node did not answer
        for view in unknown:
            proc = plan.process(view.name)
            print(f"cpconsole: {view.name} on {proc.node} may still run: {view.reason}", file=sys.stderr)
        return EXIT_UNREACHABLE
    code = exit_code_for(views) if judge == "started" else EXIT_OK
    if code == EXIT_NOT_READY:  # up of a part: the rest need not be up
        code = EXIT_OK
    return code if code != EXIT_OK or ok else EXIT_FAILED


def up(plan: LaunchPlan, only: list[str] | None, as_json: bool) -> int:
    return asyncio.run(_run_verb(plan, as_json, lambda o: o.up(only), journal=("up", only or ())))


def down(plan: LaunchPlan, only: list[str] | None, as_json: bool, *, force: bool = False) -> int:
    # a process that had failed before is still reported, but stopping everything is what down is judged by
    stop = _run_verb(
        plan,
        as_json,
        lambda o: o.down(only, force=force),
        narrate=False,
        judge="action",
        journal=("down", only or ()),
        concerns=only or (),
    )
    return asyncio.run(stop)


def restart(plan: LaunchPlan, target: str, as_json: bool, *, force: bool = False) -> int:
    return asyncio.run(
        _run_verb(plan, as_json, lambda o: o.restart(target, force=force), journal=("restart", (target,)))
    )


def apply(plan: LaunchPlan, *, dry_run: bool, yes: bool, allow_downtime: bool) -> int:
    """What the profile asks of what runs: the steps, then (asked, or --yes) each taken in turn;
    a step that would interrupt the service needs --allow-downtime."""

    async def run() -> int:
        async with Session(plan) as session:
            steps = await session.apply_plan()
            if not steps:
                print("nothing to change: what runs is what the profile says")
                return EXIT_OK
            print("".join(f"  {index}. {step.text}\n" for index, step in enumerate(steps, 1)), end="")
            stopping = [w for s in steps if s.action == "restart" and (w := interrupts_service(plan, s.target))]
            if stopping and not allow_downtime:
                print(f"cpconsole: {stopping[0]}; add --allow-downtime to apply anyway", file=sys.stderr)
                return EXIT_USAGE
            if dry_run:
                return EXIT_OK
            if not yes and not await _confirmed(f"take these {len(steps)} step(s)?", "nothing changed"):
                return EXIT_FAILED
            narrator = asyncio.create_task(_narrate(session.orchestrator, notices_only=False))
            try:
                ok = await session.apply(steps)
            finally:
                await asyncio.sleep(0)  # the last events reach the narrator
                narrator.cancel()
            views = list(session.orchestrator.views.values())
            sys.stdout.write(reports.status_text(plan, views, removed=list(session.orchestrator.removed.values())))
            return EXIT_OK if ok else EXIT_FAILED

    try:
        return asyncio.run(run())
    except DeploymentBusy as exc:
        print(f"cpconsole: {exc}; nothing was changed", file=sys.stderr)
        return EXIT_BUSY


def status(plan: LaunchPlan, as_json: bool) -> int:
    async def adopt(orch: Orchestrator) -> bool:
        await orch.adopt()
        return True

    return asyncio.run(_run_verb(plan, as_json, adopt, narrate=False, judge="status"))


def journal(plan: LaunchPlan, last: int, as_json: bool) -> int:
    """The deployment's journal: who did what to it, from where, how it ended."""

    async def look() -> list[JournalEntry]:
        async with Session(plan) as session:
            return await session.journal(last)

    try:
        entries = asyncio.run(look())
    except RemoteError as exc:
        print(f"cpconsole: journal: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    sys.stdout.write(reports.journal_json(entries) if as_json else reports.journal_text(entries))
    return EXIT_OK


def ranks(plan: LaunchPlan, instance: str | None, as_json: bool) -> int:
    """Every rank of the deployment (or of one instance): where, what, and its state."""

    async def look() -> int:
        async with Session(plan) as session:
            await session.orchestrator.adopt()
            await session.read_recent_lines()
            rows = [r for r in await session.ranks() if instance is None or r.instance == instance]
            views = list(session.orchestrator.views.values())
        sys.stdout.write(reports.ranks_json(rows) if as_json else reports.ranks_text(rows))
        return EXIT_FAILED if any(r.state == "failed" for r in rows) else exit_code_for(views)

    return asyncio.run(look())


async def _logs(plan: LaunchPlan, names: list[str], follow: bool, lines: int, since_offset: int | None) -> int:
    """The last lines of each log, prefixed with the process, or (since_offset, one process) its
    raw bytes from that offset with the next offset on stderr; then maybe follow from the end."""
    width = max(len(n) for n in names)
    raw = since_offset is not None
    code = EXIT_OK
    async with Session(plan) as session:
        paths = {n: session.orchestrator.log_path(n) for n in names}
        offsets = {}
        for name in names:
            node = session.transports[plan.process(name).node]
            try:
                answer = await node.run(scripts.log_slice(paths[name], offset=since_offset, lines=lines), timeout=30)
                if not answer.ok:
                    raise RemoteError(node.node, answer.stderr.decode("utf-8", "replace").strip() or "no log")
                size, start, data = scripts.parse_log_slice(answer.stdout)
            except (RemoteError, ValueError) as exc:
                print(f"{name:<{width}} | cannot read the log: {exc}", file=sys.stderr)
                code = EXIT_UNREACHABLE
                continue
            if raw:
                if start != since_offset:
                    print(
                        f"cpconsole: the log of {name} is shorter than {since_offset} bytes now (restarted?): "
                        "from its start",
                        file=sys.stderr,
                    )
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
                if not follow:
                    print(f"next offset: {size}", file=sys.stderr)
            else:
                for line in data.decode("utf-8", "replace").splitlines():
                    print(f"{name:<{width}} | {terminal_safe(line)}")
            offsets[name] = size
        if follow:
            nodes = {n: session.transports[plan.process(n).node] for n in offsets}
            await asyncio.gather(*(_follow_one(nodes[n], paths[n], offsets[n], n, width, raw) for n in offsets))
    return code


async def _follow_one(node: Transport, path: str, offset: int, name: str, width: int, raw: bool) -> None:
    if not isinstance(node, ShellTransport):
        raise RemoteError(node.node, "this transport cannot follow a file")
    lines = Lines()  # as the console shows them: inert, one line's length capped
    async for item in node.tail(path, offset):
        if isinstance(item, TailEvent):
            print(
                f"{name:<{width}} | -- {item.kind}: {item.detail}", file=sys.stderr if raw else sys.stdout, flush=True
            )
            continue
        assert isinstance(item, TailChunk)
        if raw:  # the bytes as they are: what a script resuming at an offset expects
            sys.stdout.buffer.write(item.data)
            sys.stdout.flush()
            continue
        for line in lines.feed(item.data):
            print(f"{name:<{width}} | {line}", flush=True)


def logs(plan: LaunchPlan, only: list[str] | None, follow: bool, lines: int, since_offset: int | None = None) -> int:
    names = only or [p.name for p in plan.processes]
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_logs(plan, names, follow, lines, since_offset))
    return EXIT_OK


def exec_on(plan: LaunchPlan, nodes: list[str], command: list[str]) -> int:
    async def run() -> dict[str, RunResult | str]:
        async with Session(plan) as session:
            return await session.exec(nodes, command, timeout=60)

    results = asyncio.run(run())
    sys.stdout.write(reports.exec_text(results))
    if any(isinstance(r, str) for r in results.values()):
        return EXIT_UNREACHABLE
    return EXIT_OK if all(not isinstance(r, str) and r.ok for r in results.values()) else EXIT_FAILED


def smoke(
    plan: LaunchPlan,
    checks: CheckSettings,
    target: str,
    needle_tokens: int | None,
    depths: list[float],
    max_tokens: int,
    as_json: bool,
) -> int:
    """Health, probe path, a completion, the needle(s) and the profile's quick accuracy check; exit
    0 only if every check passed."""

    async def run() -> list[SmokeCheck]:
        async with Session(plan, checks=checks) as session:
            return await session.smoke(target, needle_tokens=needle_tokens, depths=depths, max_tokens=max_tokens)

    done = asyncio.run(run())
    sys.stdout.write(reports.smoke_json(done) if as_json else reports.smoke_text(done))
    return EXIT_OK if all(c.passed for c in done) else EXIT_FAILED


def preflight(
    plan: LaunchPlan,
    checks: CheckSettings,
    as_json: bool,
    *,
    hash_weights: bool = False,
    profile_warnings: Sequence[str] = (),
    verbose: bool = False,
) -> int:
    said = -1

    def hashed(progress: HashProgress) -> None:  # on stderr, at each further 5 % of the bytes
        nonlocal said
        step = 20 * progress.done // max(1, progress.total)
        if step > said:
            said = step
            sys.stderr.write(f"  hashing the weights: {progress.done / 1e9:.1f} of {progress.total / 1e9:.1f} GB\n")

    async def run() -> list[Check]:
        async with Session(plan, findings=tuple(profile_warnings), checks=checks) as session:
            return await session.preflight(hash_weights=hash_weights, hashed=hashed)

    results = asyncio.run(run())
    print(reports.preflight_json(results) if as_json else reports.preflight_text(results, verbose))
    if any(c.status == "FAIL" and c.check == "reachable" for c in results):
        return EXIT_UNREACHABLE
    return EXIT_FAILED if any(c.status == "FAIL" for c in results) else EXIT_OK


def bench(plan: LaunchPlan, node: str, settings: BenchSettings, fmt: Format) -> int:
    """Run `vllm bench serve` on a node, keep its result, compare it with the earlier runs."""

    async def run() -> BenchRun:
        async with Session(plan) as session:
            return await session.bench(
                lambda line: None if fmt == "json" else print(line, flush=True), node=node, settings=settings
            )

    try:
        result = asyncio.run(run())
    except RemoteError as exc:
        print(f"cpconsole: bench: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if fmt == "json":
        print(
            json.dumps(
                {"stored": str(stored_path(result)), "summary": asdict(result.summary), "result": result.result},
                indent=2,
            )
        )
    else:
        print(f"\nstored {stored_path(result)}\n")
        sys.stdout.write(results.bench_report(load_runs(plan.profile), fmt, mark=result.started))
    return EXIT_OK if result.summary.failed == 0 and result.summary.completed > 0 else EXIT_FAILED


def sweep(plan: LaunchPlan, settings: SweepSettings, fmt: Format) -> int:
    """The context-length sweep; each length's point on stderr as it is measured, then the report
    (this run beside the earlier ones). Exit 0 only when every request of every length answered."""

    def progress(point: SweepPoint) -> None:
        state = f"{point.ok}/{point.sent} ok" if point.sent else "not sent"
        ttft = f", TTFT {point.ttft_s:.3f} s" if point.ttft_s is not None else ""
        print(f"sweep: {short_length(point.length)} {state}{ttft}", file=sys.stderr, flush=True)

    async def run() -> SweepRun:
        async with Session(plan) as session:
            return await session.sweep(settings, progress)

    try:
        done = asyncio.run(run())
    except ValueError as exc:  # a profile without a prefilling API server
        print(f"cpconsole: sweep: {exc}", file=sys.stderr)
        return EXIT_FAILED
    stored = [run for run in load_sweeps(plan.profile) if run.started != done.started]
    sys.stdout.write(results.sweep_report([*stored, done], fmt))  # this run even where it could not be kept
    return EXIT_OK if done.complete else EXIT_FAILED


def accuracy(
    plan: LaunchPlan, dataset: str, target: str, limit: int | None, max_tokens: int, fmt: Format, gate: float | None
) -> int:
    """The built-in accuracy check; progress on stderr (done/total, the running score), then the
    report. Exit 1 when a request failed or the score is below the profile's minimum."""
    right = 0

    def progress(result: ItemResult, done: int, total: int) -> None:
        nonlocal right
        right += result.correct
        print(f"accuracy: {done}/{total}, {100 * right / done:.1f} % so far", file=sys.stderr, flush=True)

    async def run() -> AccuracyRun:
        async with Session(plan) as session:
            return await session.accuracy(
                dataset=dataset, target=target, limit=limit, max_tokens=max_tokens, on_item=progress
            )

    done = asyncio.run(run())
    return _accuracy_done(plan, done, fmt, gate)


def aisbench(
    plan: LaunchPlan, dataset: str, target: str, limit: int | None, max_out_len: int, fmt: Format, gate: float | None
) -> int:
    """AISBench where the API server runs: its output on stderr as it comes, then the report.
    Exit 1 as the built-in check; 3 when AISBench or its dataset is not there (nothing started)."""

    async def run() -> AccuracyRun:
        async with Session(plan) as session:
            return await session.aisbench(
                lambda line: print(terminal_safe(line), file=sys.stderr, flush=True),
                dataset=dataset,
                target=target,
                limit=limit,
                max_out_len=max_out_len,
            )

    try:
        done = asyncio.run(run())
    except NotStarted as exc:
        print(f"cpconsole: accuracy: {exc}; nothing was started", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RemoteError as exc:
        print(f"cpconsole: accuracy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return _accuracy_done(plan, done, fmt, gate)


def _accuracy_done(plan: LaunchPlan, done: AccuracyRun, fmt: Format, gate: float | None) -> int:
    stored = [r for r in load_accuracy(plan.profile) if r.started != done.started]
    sys.stdout.write(results.accuracy_report([*stored, done], fmt, gate))  # this run even where it could not be kept
    failed = any(i.error for i in done.items) or (gate is not None and done.accuracy < gate)
    return EXIT_FAILED if failed else EXIT_OK


AROUND_S = 30 * 60  # bundle --around: this much either side


def _bell() -> None:
    """The terminal's bell: the one control character meant for the terminal, so it goes around
    the sanitiser every other text passes through."""
    stream = sys.__stdout__
    if stream is not None:
        stream.write("\a")
        stream.flush()


def watch(plan: LaunchPlan, metrics: tuple[str, int] | None = None) -> int:
    """The console without a screen, for systemd or a tmux window: it watches the deployment and
    sends its alerts (webhooks, tmux, the bell on a terminal), one line each on stdout, until
    SIGINT or SIGTERM; with `metrics` (host, port) it serves what it sees to Prometheus there. It
    starts and stops nothing."""
    sock = None
    if metrics is not None:
        try:
            sock = bind(*metrics)
        except OSError as exc:
            print(f"cpconsole: cannot serve metrics on {metrics[0]}:{metrics[1]}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        ring = plan.notify.bell and sys.stdout.isatty()
        exporter: asyncio.Task[None] | None = None
        async with Session(plan, read_only=True, via="watch") as session:
            await session.start()
            if sock is not None:
                app = metrics_app(session.snapshot, os.environ.get(METRICS_TOKEN_ENV) or None)
                exporter = asyncio.create_task(serve_metrics(app, sock))
                exporter.add_done_callback(lambda _: stop.set())  # uvicorn ends on SIGINT/SIGTERM first
                host, port = sock.getsockname()[:2]
                print(f"metrics: http://{host}:{port}/metrics", flush=True)
            notifier = session.notifier
            assert notifier is not None  # made by start()
            print(reports.watch_header(plan, notifier), flush=True)
            seq, problems = 0, [a.message for a in notifier.problems()]
            while True:  # one more look after the stop: what was sent is also printed
                stopping = stop.is_set()
                seq, notes = notifier.since(seq)
                lines = [reports.notification_line(n) for n in notes]
                now_failing = [a.message for a in notifier.problems()]
                lines += [f"{time.strftime('%H:%M:%S')} {p}" for p in now_failing if p not in problems]
                problems = now_failing
                if lines:
                    if ring and any(n.state == "firing" for n in notes):
                        _bell()
                    print("\n".join(lines), flush=True)
                if stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
            if exporter is not None:
                await cancel_and_wait(exporter)
        return EXIT_OK

    return asyncio.run(run())


def alert_test(plan: LaunchPlan) -> int:
    """A test notification on every channel of the profile: exit 0 only if each got it."""

    async def run() -> dict[str, str | None]:
        async with http_client(10) as http:
            return await Notifier(plan.profile, plan.notify, http, sender=operator()).test()

    results = asyncio.run(run())
    if plan.notify.tmux and results.get("tmux") == "not inside tmux":
        del results["tmux"]  # not a failure: there is no tmux to show it in
    if not results:
        print(f"cpconsole: {plan.profile} has no notify.webhooks and this is not inside tmux: nothing to test")
        return EXIT_FAILED
    if plan.notify.bell and sys.stdout.isatty():
        _bell()
    sys.stdout.write(reports.alert_test_text(results))
    return EXIT_OK if all(error is None for error in results.values()) else EXIT_FAILED


def ls(dirs: list[Path], as_json: bool, *, offline: bool) -> int:
    """The profiles in the directories, each with whether its deployment runs (all asked at once)."""
    listed = listed_profiles(dirs)
    if not listed:
        print(f"cpconsole: no profiles (*.yaml) in {' or '.join(map(str, dirs))}", file=sys.stderr)
        return EXIT_FAILED

    async def ask(entry: Listed) -> str:
        if entry.plan is None:
            return "invalid"
        return "not asked" if offline else await running_of(entry.plan)

    async def every() -> list[str]:
        return list(await asyncio.gather(*map(ask, listed)))

    states = asyncio.run(every())
    sys.stdout.write(reports.ls_json(listed, states) if as_json else reports.ls_text(listed, states, Path.cwd()))
    return EXIT_OK


def down_orphans(plan: LaunchPlan, *, yes: bool) -> int:
    """Processes of the profile that nothing tracks any more: listed, then stopped (after a yes at
    the terminal, or with --yes). Exit 0 when none is left."""

    async def run() -> int:
        async with Session(plan) as session:
            await session.orchestrator.adopt()
            tracked: dict[str, set[int]] = {}
            for handle in session.orchestrator.handles.values():
                tracked.setdefault(handle.node, set()).add(handle.pid)
            listed, unasked = await orphans.listings(plan, session.transports)
            found = orphans.find(plan, listed, tracked)
            sys.stdout.write(reports.orphans_text(found, unasked))
            if not found:
                return EXIT_UNREACHABLE if unasked else EXIT_OK
            if not yes and not await _confirmed(f"stop these {len(found)} process group(s)?", "nothing stopped"):
                return EXIT_FAILED
            results = await session.journaled(
                "down --orphans",
                sorted({o.process for o in found}),
                orphans.stop(session.transports, found, plan.timeouts.stop_grace),
                ok=lambda done: not any(done.values()),
            )
            sys.stdout.write(reports.orphans_stopped_text(results))
            return EXIT_OK if not any(results.values()) else EXIT_FAILED

    return asyncio.run(run())


async def _confirmed(question: str, otherwise: str) -> bool:
    """A yes at the terminal; without one (no terminal), `otherwise` is said and it is a no."""
    if not sys.stdin.isatty():
        print(f"cpconsole: {otherwise}; add --yes to go ahead", file=sys.stderr)
        return False
    answer = await asyncio.to_thread(input, f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def bundle(
    plan: LaunchPlan, profile_file: str, out: Path | None, since_s: float, around: float | None, max_bytes: int
) -> int:
    """An incident bundle (docs/bundle.md): progress on stderr, its path and what failed on stdout."""
    said = [-1]

    def hear(done: int, total: int, what: str) -> None:
        tenth = 10 * done // total
        if tenth > said[0]:
            said[0] = tenth
            sys.stderr.write(f"bundle: {done}/{total} pieces read ({terminal_safe(what)})\n")

    async def run() -> tuple[Path, Archive]:
        async with Session(plan, profile_file=profile_file) as session:
            now = session.now()
            window = Window(around - AROUND_S, around + AROUND_S) if around is not None else Window(now - since_s, now)
            path = out or Path(bundle_name(plan, now) + ".tar.gz")
            return path, await session.bundle(path, window=window, max_bytes=max_bytes, progress=hear)

    path, archive = asyncio.run(run())
    sys.stdout.write(reports.bundle_text(path, archive))
    return EXIT_OK


def _pull_reporter() -> Callable[[PullProgress], None]:
    """Pull progress on stderr: each node at every further tenth of its layers, and when done."""
    said: dict[str, int] = {}

    def hear(progress: PullProgress) -> None:
        tenth = 10 * progress.done // progress.layers if progress.layers else 0
        if progress.finished or tenth > said.get(progress.node, 0):
            said[progress.node] = tenth
            sys.stderr.write(reports.pull_progress_line(progress))

    return hear


def containers(plan: LaunchPlan, action: Literal["create", "check", "remove"], as_json: bool, *, yes: bool) -> int:
    """Create or remove the profile's containers (those with an image), then check them all."""

    async def run() -> tuple[list[ContainerOutcome], list[Check]]:
        async with Session(plan) as session:
            outcomes: list[ContainerOutcome] = []
            if action == "create":
                outcomes = await session.create_containers(_pull_reporter())
            elif action == "remove":
                question = f"remove {len(session.container_targets())} container(s)?"
                if not yes and not await _confirmed(question, "nothing removed"):
                    return [], []
                return await session.remove_containers(), []
            return outcomes, await session.container_checks()

    if not plan.containers:
        print("cpconsole: the profile runs nothing in a container", file=sys.stderr)
        return EXIT_OK
    outcomes, checks = asyncio.run(run())
    if as_json:
        print(reports.containers_json(outcomes, checks))
    else:
        sys.stdout.write(reports.container_outcomes_text(outcomes))
        if checks:
            print(reports.preflight_text(checks))
    if action == "remove" and not outcomes:
        return EXIT_FAILED  # not confirmed
    failed = any(not o.done for o in outcomes) or any(c.status == "FAIL" for c in checks)
    return EXIT_FAILED if failed else EXIT_OK
