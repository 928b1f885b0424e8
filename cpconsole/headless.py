"""The headless verbs for scripts: up, down, restart, status, logs, exec. Each returns an exit
code: 0 ok, 1 a process failed, 2 bad profile or usage (raised as ProfileError), 3 unreachable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict
from typing import Any, TextIO

import httpx

from .core.orchestrate import Orchestrator, ProcessView, ProgressNoted, StageChanged, StateChanged
from .core.orchestrate.model import UP_STATES
from .core.plan import LaunchPlan
from .core.preflight import Check, run_preflight
from .core.remote import RemoteError, ShellTransport, TailChunk, TailEvent, scripts, transport_for
from .core.remote.launch import run_dir
from .core.remote.logstore import strip_ansi
from .core.smoke.client import percentile, stream_request
from .core.smoke.prompts import HELLO, needle_prompt
from .core.telemetry.alerts import Alert, AlertEngine, hbm_limits
from .core.telemetry.pollers import Poller, Telemetry

EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 3


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
                     strip_ansi(view.last_line)[:60]))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] + "\n"
        )
    for view in views:
        if view.drift:
            out.write(f"\n{view.name} drifted from the profile:\n" + "".join(f"  {d}\n" for d in view.drift))
        if view.cause:
            out.write(f"\n{view.name}: {view.cause.summary}\n  hint: {view.cause.hint}\n  {view.cause.evidence}\n")


def _exit_for(views: list[ProcessView]) -> int:
    if any(v.state == "unknown" for v in views):
        return EXIT_UNREACHABLE
    if any(v.state in ("failed", "stalled") for v in views):
        return EXIT_FAILED
    return EXIT_OK


async def _print_events(orch: Orchestrator, out: TextIO) -> None:
    queue = orch.events.subscribe()
    while True:
        event = await queue.get()
        stamp = time.strftime("%H:%M:%S")
        if isinstance(event, StateChanged):
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
    with_alerts: bool = False,
) -> int:
    out = sys.stdout
    alerts: list[Alert] = []
    async with orchestrator(plan) as orch:
        printer = asyncio.create_task(_print_events(orch, sys.stderr)) if narrate and not as_json else None
        try:
            ok = await action(orch)
        finally:
            if printer:
                await asyncio.sleep(0)
                printer.cancel()
        views = list(orch.views.values())
        if with_alerts:
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
                            f"--- last {len(lines)} lines of {view.name}\n" + "\n".join(map(strip_ansi, lines)) + "\n"
                        )
    code = _exit_for(views)
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


def down(plan: LaunchPlan, only: list[str] | None, as_json: bool) -> int:
    return asyncio.run(_run_verb(plan, as_json, lambda o: o.down(only), narrate=False))


def restart(plan: LaunchPlan, target: str, as_json: bool) -> int:
    return asyncio.run(_run_verb(plan, as_json, lambda o: o.restart(target)))


def status(plan: LaunchPlan, as_json: bool) -> int:
    async def adopt(orch: Orchestrator) -> bool:
        await orch.adopt()
        return True

    return asyncio.run(_run_verb(plan, as_json, adopt, narrate=False, with_alerts=True))


async def _logs(plan: LaunchPlan, names: list[str], follow: bool, lines: int) -> int:
    transports: dict[str, ShellTransport] = {n.name: transport_for(n) for n in plan.nodes}
    width = max(len(n) for n in names)
    paths = {n: f"{run_dir(plan, plan.process(n))}/log" for n in names}
    code = EXIT_OK
    try:
        offsets = {}
        for name in names:
            node = transports[plan.process(name).node]
            try:
                text = (await node.run(scripts.last_lines(paths[name], lines), timeout=15)).text()
                size = (await node.run(scripts.size(paths[name]), timeout=15)).text().strip()
            except RemoteError as exc:
                print(f"{name:<{width}} | cannot read the log: {exc}", file=sys.stderr)
                code = EXIT_UNREACHABLE
                continue
            for line in text.splitlines():
                print(f"{name:<{width}} | {line}")
            offsets[name] = int(size) if size.isdigit() else 0
        if follow:
            await asyncio.gather(*(_follow_one(transports[plan.process(n).node], paths[n], offsets[n], n, width)
                                   for n in offsets))  # fmt: skip
    finally:
        await asyncio.gather(*(t.close() for t in transports.values()), return_exceptions=True)
    return code


async def _follow_one(node: ShellTransport, path: str, offset: int, name: str, width: int) -> None:
    partial = b""
    async for item in node.tail(path, offset):
        if isinstance(item, TailEvent):
            print(f"{name:<{width}} | -- {item.kind}: {item.detail}", flush=True)
            continue
        assert isinstance(item, TailChunk)
        data = partial + item.data
        *complete, partial = data.split(b"\n")
        for line in complete:
            print(f"{name:<{width}} | {line.decode('utf-8', 'replace')}", flush=True)


def logs(plan: LaunchPlan, only: list[str] | None, follow: bool, lines: int) -> int:
    names = only or [p.name for p in plan.processes]
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_logs(plan, names, follow, lines))
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
            text = result.text() + result.stderr.decode("utf-8", "replace")
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
    plan: LaunchPlan, target: str, preset: str, tokens: int, depth: float, max_tokens: int
) -> tuple[bool, dict[str, Any]]:
    proc = plan.process(target)
    base = proc.base_url
    needle = needle_prompt(tokens, depth) if preset == "needle" else None
    async with httpx.AsyncClient(trust_env=False) as http:
        if needle is not None:
            result = await stream_request(
                http, base, model=plan.model_name, prompt=needle.prompt, max_tokens=max_tokens
            )
        else:
            result = await stream_request(http, base, model=plan.model_name, messages=[{"role": "user", "content": HELLO}],
                                          max_tokens=max_tokens)  # fmt: skip
    passed = result.ok and (needle is None or needle.passed(result.text))
    report: dict[str, Any] = {
        "preset": preset, "target": target, "passed": passed, "error": result.error, "request_id": result.request_id,
        "prompt_tokens": result.prompt_tokens, "output_tokens": result.output_tokens, "ttft_s": result.ttft_s,
        "tpot_s": result.tpot_s, "itl_p50_s": percentile(result.itl_s, 0.5), "itl_p99_s": percentile(result.itl_s, 0.99),
        "e2e_s": result.e2e_s, "tokens_per_s": result.tokens_per_s, "finish_reason": result.finish_reason,
        "answer": result.text, "passphrase": needle.passphrase if needle else None, "depth": depth if needle else None,
    }  # fmt: skip
    return passed, report


def smoke(plan: LaunchPlan, target: str, preset: str, tokens: int, depth: float, max_tokens: int, as_json: bool) -> int:
    passed, report = asyncio.run(_smoke(plan, target, preset, tokens, depth, max_tokens))
    if as_json:
        print(json.dumps(report, indent=2))
        return EXIT_OK if passed else EXIT_FAILED
    what = f"needle of ~{tokens:,} tokens at {depth:.0%} depth" if preset == "needle" else "hello"
    print(f"{what} via {target}")
    if report["error"]:
        print(f"FAIL  {report['error']}")
        return EXIT_FAILED
    print(f"answer: {report['answer'].strip()[:200]}")
    if preset == "needle":
        print(f"expected passphrase: {report['passphrase']}")
    prompt = f"{report['prompt_tokens']:,}" if report["prompt_tokens"] is not None else "?"
    print(
        f"{'PASS' if passed else 'FAIL'}  prompt {prompt} tokens  TTFT {_ms(report['ttft_s'])}  "
        f"TPOT {_ms(report['tpot_s'])}  ITL p50 {_ms(report['itl_p50_s'])} p99 {_ms(report['itl_p99_s'])}  "
        f"{report['output_tokens']} tokens  {report['tokens_per_s'] or 0:.1f} tok/s  E2E {_ms(report['e2e_s'])}"
    )
    return EXIT_OK if passed else EXIT_FAILED


async def _preflight(plan: LaunchPlan, model_path: str | None) -> list[Check]:
    transports = {n.name: transport_for(n) for n in plan.nodes}
    try:
        return await run_preflight(plan, transports, model_path=model_path)
    finally:
        await asyncio.gather(*(t.close() for t in transports.values()), return_exceptions=True)


def preflight(plan: LaunchPlan, model_path: str | None, as_json: bool) -> int:
    checks = asyncio.run(_preflight(plan, model_path))
    if as_json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        width = max(len(c.check) for c in checks)
        for node in dict.fromkeys(c.node for c in checks):
            print(node)
            for c in (c for c in checks if c.node == node):
                print(
                    f"  {c.status:<4}  {c.check:<{width}}  {c.evidence}"
                    + (f"\n        hint: {c.hint}" if c.hint else "")
                )
        fails, warns = sum(c.status == "FAIL" for c in checks), sum(c.status == "WARN" for c in checks)
        print(f"{fails} failed, {warns} warning(s), {len(checks) - fails - warns} passed")
    if any(c.status == "FAIL" and c.check == "reachable" for c in checks):
        return EXIT_UNREACHABLE
    return EXIT_FAILED if any(c.status == "FAIL" for c in checks) else EXIT_OK
