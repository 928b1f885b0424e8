"""The headless verbs for scripts: up, down, restart, status, logs, exec. Each returns an exit
code: 0 ok, 1 something is broken (a process failed or ended on its own, stalled, left processes
behind, or a critical alert), 2 bad profile or usage (raised as ProfileError), 3 a node
unreachable, 4 (status) nothing broken but not every process is up and ready, 5 (up, down,
restart) another change of the deployment is under way (its holder is named)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import asdict
from typing import Any, Literal, TextIO

import httpx

from .core.orchestrate import Orchestrator, ProcessView, ProgressNoted, StageChanged, StateChanged
from .core.orchestrate.lock import DeploymentBusy
from .core.orchestrate.model import UP_STATES, Notice
from .core.plan import LaunchPlan
from .core.preflight import Check, fold, run_preflight, tally
from .core.remote import RemoteError, ShellTransport, TailChunk, TailEvent, scripts, transport_for
from .core.remote.launch import run_dir
from .core.remote.logstore import Lines
from .core.safetext import terminal_safe, terminal_safe_lines
from .core.smoke.bench import BenchRun, BenchSettings, bench_table, load_runs, run_bench, store_run
from .core.smoke.client import percentile
from .core.smoke.suite import SmokeCheck, run_suite
from .core.telemetry.alerts import Alert, AlertEngine, hbm_limits
from .core.telemetry.pollers import Poller, Telemetry

EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE, EXIT_NOT_READY, EXIT_BUSY = 0, 1, 3, 4, 5


@contextlib.asynccontextmanager
async def orchestrator(plan: LaunchPlan) -> AsyncIterator[Orchestrator]:
    transports = {node.name: transport_for(node) for node in plan.nodes}
    orch = Orchestrator(plan, transports)
    try:
        yield orch
    finally:
        await orch.close()
        await asyncio.gather(*(t.close() for t in transports.values()), return_exceptions=True)


def view_json(plan: LaunchPlan, view: ProcessView) -> dict[str, Any]:
    proc = plan.process(view.name)
    return {
        "name": view.name,
        "role": proc.role,
        "node": proc.node,
        "host": proc.host,
        "state": view.state,
        "label": view.label,
        "pid": view.pid,
        "exit_code": view.exit_code,
        "health_ms": round(view.health_ms, 1) if view.health_ms is not None else None,
        "reason": view.reason,
        "progress": view.progress,
        "last_line": view.last_line,
        "drift": list(view.drift),
        "leftovers": view.leftovers,
        "cause": None
        if view.cause is None
        else {
            "kind": view.cause.kind,
            "summary": view.cause.summary,
            "hint": view.cause.hint,
            "evidence": view.cause.evidence,
        },
    }


def print_status(plan: LaunchPlan, views: list[ProcessView], out: TextIO) -> None:
    rows = [("PROCESS", "ROLE", "NODE", "PID", "STATE", "UPTIME", "HEALTH", "LAST LINE")]
    for view in views:
        proc = plan.process(view.name)
        health = f"{view.health_ms:.0f}ms" if view.health_ms is not None else "-"
        rows.append((view.name, proc.role, proc.node, str(view.pid or "-"), view.label, view.uptime(), health,
                     terminal_safe(view.last_line)[:60]))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] + "\n"
        )
    for view in views:
        if view.drift:
            out.write(f"\n{view.name} drifted from the profile:\n" + "".join(f"  {d}\n" for d in view.drift))
            out.write(f"  ({view.reason})\n")
        if view.cause:
            out.write(f"\n{view.name}: {view.cause.summary}\n  hint: {view.cause.hint}\n  {view.cause.evidence}\n")
        if view.leftovers:
            out.write(
                f"\n{view.name}: {view.leftovers} process(es) of its group still run after it ended; `down` stops them\n"
            )


def exit_code_for(views: list[ProcessView], alerts: Sequence[Alert] = ()) -> int:
    """What `status` answers monitoring with: unreachable first, then broken, then not ready."""
    if any(v.state == "unknown" for v in views):
        return EXIT_UNREACHABLE
    broken = ("failed", "exited", "stalled")
    if any(v.state in broken or v.leftovers for v in views) or any(a.severity == "critical" for a in alerts):
        return EXIT_FAILED
    if any(not (v.state == "ready" or (v.state == "drifted" and v.health_ms is not None)) for v in views):
        return EXIT_NOT_READY
    return EXIT_OK


async def _print_events(orch: Orchestrator, out: TextIO, *, notices_only: bool = False) -> None:
    queue = orch.events.subscribe()
    while True:
        event = await queue.get()
        stamp = time.strftime("%H:%M:%S")
        if isinstance(event, Notice):
            out.write(f"{stamp} -- {event.text}\n")
        elif notices_only:
            continue
        elif isinstance(event, StateChanged):
            view = event.view
            if view.state == "starting" and view.pid:
                extra = f"pid {view.pid}"
            elif view.state in ("failed", "stalled", "unknown", "exited", "drifted"):
                extra = view.reason
            else:
                extra = ""
            out.write(f"{stamp} {event.process:<12} {view.label:<10} {extra}\n")
            if view.cause:
                out.write(f"{stamp} {event.process:<12} cause: {view.cause.summary}\n")
                out.write(f"{stamp} {event.process:<12} hint:  {view.cause.hint}\n")
        elif isinstance(event, ProgressNoted):
            out.write(f"{stamp} {event.process:<12} {'':<10} {event.text}\n")
        elif isinstance(event, StageChanged):
            out.write(f"{stamp} -- stage {event.stage} {event.status}{': ' + event.detail if event.detail else ''}\n")
        out.flush()


async def _run_verb(
    plan: LaunchPlan,
    as_json: bool,
    action: Callable[[Orchestrator], Coroutine[Any, Any, bool]],
    *,
    narrate: bool = True,
    judge: Literal["action", "started", "status"] = "started",
) -> int:
    """Run an action and print the processes after it. Judged by: `action` its own success only
    (down: nothing left running); `started` also any process broken or unreachable; `status` the
    whole deployment with one round of alerts (exit_code_for)."""
    out = sys.stdout
    alerts: list[Alert] = []
    async with orchestrator(plan) as orch:
        printer = asyncio.create_task(_print_events(orch, sys.stderr, notices_only=as_json or not narrate))
        try:
            ok = await action(orch)
        except DeploymentBusy as exc:
            print(f"cpconsole: {exc}; nothing was changed", file=sys.stderr)
            return EXIT_BUSY
        finally:
            await asyncio.sleep(0)
            printer.cancel()
        views = list(orch.views.values())
        if judge == "status":
            alerts = await alert_snapshot(orch)
        if as_json:
            json.dump({"processes": [view_json(plan, v) for v in views], "alerts": [asdict(a) for a in alerts]},
                      out, indent=2)  # fmt: skip
            out.write("\n")
        else:
            print_status(plan, views, out)
            if alerts:
                out.write("\nALERTS\n" + "".join(f"  {a.severity:<8} {a.source:<12} {a.message}\n" for a in alerts))
            for view in views:
                if view.state == "failed" and view.cause is None:
                    out.write(f"\n{view.name}: {view.reason}\n")
                if view.state == "failed":
                    lines = orch.stores[view.name].last(50)
                    if lines:
                        out.write(
                            f"--- last {len(lines)} lines of {view.name}\n"
                            + "\n".join(map(terminal_safe, lines))
                            + "\n"
                        )
    if judge == "status":
        return exit_code_for(views, alerts)
    code = exit_code_for(views) if judge == "started" else EXIT_OK
    if code == EXIT_NOT_READY:  # up of a part: the rest need not be up
        code = EXIT_OK
    return code if code != EXIT_OK or ok else EXIT_FAILED


async def alert_snapshot(orch: Orchestrator, timeout: float = 8.0) -> list[Alert]:
    """One round of telemetry (npu-smi on every node, /metrics of running servers) through the
    alert rules; a source that fails is an alert of its own."""
    plan = orch.plan
    running = [n for n, v in orch.views.items() if v.state in UP_STATES]
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(timeout)) as http:
        telemetry = Telemetry(plan, orch.transports, http, npu_timeout=timeout, http_timeout=timeout)
        pollers: list[Poller[Any]] = [
            *telemetry.npu.values(),
            *(p for n, p in telemetry.metrics.items() if n in running),
        ]
        results = await asyncio.gather(*(p.poll_once() for p in pollers))
    npu = {n: p.latest.value for n, p in telemetry.npu.items()}
    metrics = {n: p.latest.value for n, p in telemetry.metrics.items() if n in running}
    stalled = {n: v.reason for n, v in orch.views.items() if v.state == "stalled"}
    rules = AlertEngine(plan.alerts, hbm_limits(plan))
    alerts = rules.evaluate(time.time(), npu=npu, metrics=metrics, stalled=stalled)
    alerts += [Alert(f"source:{r.source}", "warning", r.source.split("@")[-1], f"{r.source}: {r.error}")
               for r in results if r.error]  # fmt: skip
    return alerts


def up(plan: LaunchPlan, only: list[str] | None, as_json: bool) -> int:
    return asyncio.run(_run_verb(plan, as_json, lambda o: o.up(only)))


def down(plan: LaunchPlan, only: list[str] | None, as_json: bool, *, force: bool = False) -> int:
    # a process that had failed before is still reported, but stopping everything is what down is judged by
    return asyncio.run(_run_verb(plan, as_json, lambda o: o.down(only, force=force), narrate=False, judge="action"))


def restart(plan: LaunchPlan, target: str, as_json: bool, *, force: bool = False) -> int:
    return asyncio.run(_run_verb(plan, as_json, lambda o: o.restart(target, force=force)))


def status(plan: LaunchPlan, as_json: bool) -> int:
    async def adopt(orch: Orchestrator) -> bool:
        await orch.adopt()
        return True

    return asyncio.run(_run_verb(plan, as_json, adopt, narrate=False, judge="status"))


async def _logs(plan: LaunchPlan, names: list[str], follow: bool, lines: int, since_offset: int | None) -> int:
    """The last lines of each log, prefixed with the process, or (since_offset, one process) its
    raw bytes from that offset with the next offset on stderr; then maybe follow from the end."""
    transports: dict[str, ShellTransport] = {n.name: transport_for(n) for n in plan.nodes}
    width = max(len(n) for n in names)
    paths = {n: f"{run_dir(plan, plan.process(n))}/log" for n in names}
    raw = since_offset is not None
    code = EXIT_OK
    try:
        offsets = {}
        for name in names:
            node = transports[plan.process(name).node]
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
                    print(f"cpconsole: the log of {name} is shorter than {since_offset} bytes now (restarted?): "
                          "from its start", file=sys.stderr)  # fmt: skip
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
                if not follow:
                    print(f"next offset: {size}", file=sys.stderr)
            else:
                for line in data.decode("utf-8", "replace").splitlines():
                    print(f"{name:<{width}} | {terminal_safe(line)}")
            offsets[name] = size
        if follow:
            await asyncio.gather(*(_follow_one(transports[plan.process(n).node], paths[n], offsets[n], n, width, raw)
                                   for n in offsets))  # fmt: skip
    finally:
        await asyncio.gather(*(t.close() for t in transports.values()), return_exceptions=True)
    return code


async def _follow_one(node: ShellTransport, path: str, offset: int, name: str, width: int, raw: bool) -> None:
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


async def _exec(plan: LaunchPlan, nodes: list[str], command: list[str]) -> int:
    transports = {n: transport_for(plan.node(n)) for n in nodes}
    try:
        results = await asyncio.gather(
            *(t.run(command, timeout=60) for t in transports.values()), return_exceptions=True
        )
    finally:
        await asyncio.gather(*(t.close() for t in transports.values()), return_exceptions=True)
    groups: dict[str, list[str]] = {}
    code = EXIT_OK
    for node, result in zip(nodes, results, strict=True):
        if isinstance(result, BaseException):
            text = f"error: {result}\n"
            code = EXIT_UNREACHABLE
        else:
            text = terminal_safe_lines(result.text() + result.stderr.decode("utf-8", "replace"))
            if not result.ok:
                text += f"(exit {result.exit_code})\n"
                code = max(code, EXIT_FAILED)
        groups.setdefault(text, []).append(node)
    for text, members in groups.items():
        label = f"identical on {len(members)}/{len(nodes)} nodes" if len(members) > 1 else "1 node"
        print(f"---------------- {', '.join(members)} ({label})")
        print(text, end="" if text.endswith("\n") else "\n")
    return code


def exec_on(plan: LaunchPlan, nodes: list[str], command: list[str]) -> int:
    return asyncio.run(_exec(plan, nodes, command))


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.2f} s"


async def _smoke(
    plan: LaunchPlan, target: str, needle_tokens: int | None, depths: list[float], max_tokens: int
) -> list[SmokeCheck]:
    async with httpx.AsyncClient(trust_env=False) as http:
        return await run_suite(plan, http, target=target, needle_tokens=needle_tokens, depths=depths,
                               max_tokens=max_tokens)  # fmt: skip


def smoke(
    plan: LaunchPlan, target: str, needle_tokens: int | None, depths: list[float], max_tokens: int, as_json: bool
) -> int:
    """Health, probe path, a completion and the needle(s); exit 0 only if every check passed."""
    checks = asyncio.run(_smoke(plan, target, needle_tokens, depths, max_tokens))
    passed = all(c.passed for c in checks)
    if as_json:
        print(json.dumps({"passed": passed, "checks": [c.as_json() for c in checks]}, indent=2))
        return EXIT_OK if passed else EXIT_FAILED
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"{'PASS' if check.passed else 'FAIL'}  {check.name:<{width}}  {check.detail}")
        result = check.result
        if result is not None and result.ok:
            prompt = f"{result.prompt_tokens:,}" if result.prompt_tokens is not None else "?"
            if check.kind == "needle" and not check.prompt_tokens_measured:
                prompt += " (estimated: no /tokenize)"
            print(
                f"{'':6}{'':<{width}}  prompt {prompt} tokens  TTFT {_ms(result.ttft_s)}  TPOT {_ms(result.tpot_s)}  "
                f"ITL p50 {_ms(percentile(result.itl_s, 0.5))} p99 {_ms(percentile(result.itl_s, 0.99))}  "
                f"{result.output_tokens} tokens  {result.tokens_per_s or 0:.1f} tok/s  E2E {_ms(result.e2e_s)}"
            )
    failed = [c.name for c in checks if not c.passed]
    print(
        f"smoke: {len(checks) - len(failed)}/{len(checks)} passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return EXIT_OK if passed else EXIT_FAILED


async def _preflight(plan: LaunchPlan, model_path: str | None, hash_weights: bool,
                     profile_warnings: Sequence[str]) -> list[Check]:  # fmt: skip
    transports = {n.name: transport_for(n) for n in plan.nodes}
    try:
        return await run_preflight(plan, transports, model_path=model_path, hash_weights=hash_weights,
                                   profile_warnings=profile_warnings)  # fmt: skip
    finally:
        await asyncio.gather(*(t.close() for t in transports.values()), return_exceptions=True)


def preflight_text(checks: Sequence[Check], verbose: bool = False) -> str:
    """Folded: one line per identical good result, each problem in full with its hint."""
    lines = [c.line for c in checks] if verbose else fold(checks)
    width = max((len(line.check) for line in lines), default=0)
    out = []
    for line in lines:
        text = line.text.replace("\n", "\n" + " " * (width + 8))
        out.append(
            f"  {line.status:<4}  {line.check:<{width}}  {text}" + (f"\n        hint: {line.hint}" if line.hint else "")
        )
    failed, warned, passed = tally(checks)
    out.append(f"{failed} failed, {warned} warning(s), {passed} passed")
    return "\n".join(out)


def preflight(plan: LaunchPlan, model_path: str | None, as_json: bool, *, hash_weights: bool = False,
              profile_warnings: Sequence[str] = (), verbose: bool = False) -> int:  # fmt: skip
    checks = asyncio.run(_preflight(plan, model_path, hash_weights, profile_warnings))
    print(json.dumps([asdict(c) for c in checks], indent=2) if as_json else preflight_text(checks, verbose))
    if any(c.status == "FAIL" and c.check == "reachable" for c in checks):
        return EXIT_UNREACHABLE
    return EXIT_FAILED if any(c.status == "FAIL" for c in checks) else EXIT_OK


async def _bench(plan: LaunchPlan, node: str, settings: BenchSettings, echo: bool) -> BenchRun:
    transport = transport_for(plan.node(node))
    try:
        async for item in run_bench(plan, transport, settings):
            if isinstance(item, BenchRun):
                return item
            if echo:
                print(item, flush=True)
    finally:
        await transport.close()
    raise RemoteError(node, "the bench ended without a result")


def bench(plan: LaunchPlan, node: str, settings: BenchSettings, as_json: bool) -> int:
    """Run `vllm bench serve` on a node, keep its result, compare it with the earlier runs."""
    try:
        run = asyncio.run(_bench(plan, node, settings, echo=not as_json))
    except RemoteError as exc:
        print(f"cpconsole: bench: {exc}", file=sys.stderr)
        return EXIT_FAILED
    path = store_run(run)
    if as_json:
        print(json.dumps({"stored": str(path), "summary": asdict(run.summary), "result": run.result}, indent=2))
    else:
        print(f"\nstored {path}\n")
        print(bench_table(load_runs(plan.profile), mark=run.started))
    return EXIT_OK if run.summary.failed == 0 and run.summary.completed > 0 else EXIT_FAILED
