"""Bring a deployment up in the guide's order, know when each process is really ready, say why
one failed, stop it cleanly, and pick everything up again after the console died.

The orchestrator never stops or starts anything on its own: only `up`, `down` and `restart` do.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import posixpath
import secrets
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx

from ..diagnosis.explain import FailureCause, explain
from ..httpclient import http_client, status_text, tcp_state
from ..plan import LaunchPlan, NodePlan, ProcessPlan, pidfile_of
from ..remote import LogStore, ProcessHandle, ProcessStatus, RemoteError, Transport, scripts
from ..remote import manifest as manifest_file
from ..remote.base import handle_from_pidfile
from ..remote.launch import run_dir, spawn_spec
from ..remote.logstore import follow
from ..remote.manifest import Manifest
from ..render import KEY_FILE
from ..router import not_ready
from ..safetext import terminal_safe
from ..tasks import cancel_and_wait
from .apply import Step
from .drain import Backend, ProxyAdmin, backends_of, others_serve
from .drift import manifest_drift
from .lock import DeploymentLock, holder_for, lock_dir
from .model import (
    EventBus,
    Notice,
    ProcessView,
    ProgressNoted,
    RemovedProcess,
    StageChanged,
    StateChanged,
    operator,
)
from .progress import last_news, progress, waiting_for_peer
from .stages import Stage, instance_of, stages
from .states import ANSWERING, UP_STATES, Trigger, can, transition

LAST_LINES = 50
SETTLE_S = 3.0  # how long ranks without HTTP are watched for an early failure or stall
RECENT_BYTES = 64 * 1024  # how much of an adopted log to read back for context
DOWN_WAITS_S = 120.0  # for an up asked to stop (or another down) to let go of the lock


class Orchestrator:
    def __init__(
        self,
        plan: LaunchPlan,
        transports: Mapping[str, Transport],
        *,
        http: httpx.AsyncClient | None = None,
        poll: float = 0.25,
        log_lines: int = 20_000,
        api_key: str | None = None,
    ) -> None:
        self.plan = plan
        self._api_key = api_key  # handed to the processes that need it at each start, never stored
        self.transports = transports
        self.poll = poll
        self.events = EventBus()
        self.views: dict[str, ProcessView] = {p.name: ProcessView(p.name) for p in plan.processes}
        self.handles: dict[str, ProcessHandle] = {}
        self.stores: dict[str, LogStore] = {p.name: LogStore(log_lines) for p in plan.processes}
        self._seen: dict[str, int] = dict.fromkeys(self.views, 0)
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._ending: set[asyncio.Task[None]] = set()  # tails told to stop, still closing their stream
        self._launched: set[str] = set()  # progress of adopted processes is history, not news
        self._telemetry_stalls: set[str] = set()
        # processes of this deployment that the profile no longer has (an instance removed or renamed
        # since), found running in its run directories: shown, and stopped by a whole `down`
        self.removed: dict[str, RemovedProcess] = {}
        self.operator = operator()
        self._http = http or http_client(3.0)
        self._own_http = http is None

    # ------------------------------------------------------------ bookkeeping

    def _proc(self, name: str) -> ProcessPlan:
        return self.plan.process(name)

    def _node(self, name: str) -> Transport:
        return self.transports[self._proc(name).node]

    def _set(self, name: str, **changes: Any) -> ProcessView:
        """Change what is known of a process, its state excepted (that moves only by `_move`)."""
        assert "state" not in changes, "states change by _move"
        new = replace(self.views[name], **changes)
        self.views[name] = new
        return new

    def _move(self, name: str, trigger: Trigger, **changes: Any) -> ProcessView:
        """A trigger, through the state table (IllegalMove: a bug of ours), with what else changed."""
        old = self.views[name]
        state = transition(old.state, trigger)
        new = replace(old, state=state, **changes)
        if state != old.state:
            new = replace(new, since=time.time())
        self.views[name] = new
        if state != old.state:
            self.events.publish(StateChanged(name, new, old.state, trigger))
        return new

    def log_path(self, name: str) -> str:
        return posixpath.join(run_dir(self.plan, self._proc(name)), "log")

    def _follow(self, name: str, from_offset: int) -> None:
        if name in self._tails and not self._tails[name].done():
            return
        store = self.stores[name]
        store.offset = from_offset
        self._tails[name] = asyncio.create_task(follow(self._node(name), self.log_path(name), store))

    def _scan(self, name: str) -> list[str]:
        """New log lines since the last look; notes progress and the last line."""
        start, lines = self.stores[name].since(self._seen[name])
        self._seen[name] = start + len(lines)
        for line in lines:
            note = progress(line)
            if note:
                self._set(name, progress=note)
                if name in self._launched:
                    self.events.publish(ProgressNoted(name, note))
        news = last_news(lines)
        if news is not None:
            self._set(name, last_line=news[-300:])
        return lines

    async def last_lines(self, name: str) -> list[str]:
        """The log's last lines, read from the node (the tail may not have caught up yet)."""
        try:
            result = await self._node(name).run(scripts.last_lines(self.log_path(name), LAST_LINES), timeout=10)
        except RemoteError:
            return self.stores[name].last(LAST_LINES)
        return (
            [terminal_safe(line) for line in result.text().splitlines()]
            if result.ok
            else self.stores[name].last(LAST_LINES)
        )

    async def health(self, name: str) -> float | None:
        """Milliseconds for the process's health endpoint to answer 200, else None."""
        proc = self._proc(name)
        if not proc.http_port:
            return None
        started = time.monotonic()
        try:
            answer = await self._http.get(proc.base_url + proc.health_path)
            if answer.status_code == 200 and proc.proxy_kind == "vllm-router":
                routed = [p.base_url for p in self.plan.processes if p.http_port and p.role in ("prefill", "decode")]
                return None if not_ready(answer.json(), routed) else (time.monotonic() - started) * 1000
        except (httpx.HTTPError, ValueError):
            return None
        return (time.monotonic() - started) * 1000 if answer.status_code == 200 else None

    # ------------------------------------------------------------ adopt and status

    async def adopt(self) -> None:
        """Find what already runs, from the manifests on each node; nothing is (re)started."""
        await asyncio.gather(*(self._adopt(p) for p in self.plan.processes), self._find_removed())
        await self.refresh()

    async def _find_removed(self) -> None:
        """This deployment's processes that run but are no longer in the profile, on every node."""
        planned = {(p.node, p.name) for p in self.plan.processes}

        async def on(node: NodePlan) -> list[RemovedProcess]:
            base = posixpath.join(node.run_dir, self.plan.run_key)
            transport = self.transports[node.name]
            try:
                listed = await transport.run(scripts.process_dirs(base), timeout=10)
                names = [n for n in listed.text().split() if (node.name, n) not in planned]
                found = []
                for name in names:
                    directory = posixpath.join(base, name)
                    read = await transport.run(scripts.read(posixpath.join(directory, manifest_file.FILE)), timeout=10)
                    manifest = Manifest.decode(read.stdout) if read.ok else None
                    if manifest is None or manifest.node != node.name:  # another node's, on a shared disk
                        continue
                    pidfile = pidfile_of(self.plan.run_key, name) if manifest and manifest.container else None
                    handle = (
                        manifest.handle(
                            node.name, directory, container_cli=node.tools.docker, container_pidfile=pidfile
                        )
                        if manifest
                        else None
                    )
                    if handle is not None and (await transport.status(handle)).state == "running":
                        found.append(RemovedProcess(name, node.name, handle, manifest.started_by if manifest else ""))
                return found
            except RemoteError:
                return []  # a node that does not answer: its planned processes say so already

        found = await asyncio.gather(*(on(n) for n in self.plan.nodes))
        self.removed = {r.name: r for group in found for r in group}

    async def notice_starts_elsewhere(self) -> None:
        """Processes that do not run here but that someone started since (another console, a
        script): adopted like at start-up. What is known of the others (an exit, its cause) stays."""
        down = [p for p in self.plan.processes if self.views[p.name].state not in UP_STATES]
        await asyncio.gather(*(self._adopt(p, only_new_starts=True) for p in down))

    async def _adopt(self, proc: ProcessPlan, *, only_new_starts: bool = False) -> None:
        node = self.transports[proc.node]
        directory = run_dir(self.plan, proc)
        try:
            manifest, handle, found_by = await self._find(proc, directory)
            if only_new_starts and (handle is None or handle == self.handles.get(proc.name)):
                return
            if handle is None:
                self._move(proc.name, "found_nothing" if found_by == "never started" else "lost_track", reason=found_by)
                return
            status = await node.status(handle)
            if only_new_starts and status.state != "running":
                return
            size = await node.run(scripts.size(self.log_path(proc.name)), timeout=10)
        except RemoteError as exc:
            if not only_new_starts:  # a node that does not answer a look in passing changes nothing
                self._move(proc.name, "lost_track", reason=str(exc))
            return
        started = manifest.started_at if manifest else ""
        if status.state == "running":
            self.handles[proc.name] = handle
            # drifted: what it runs is not what the profile says now (an edit elsewhere in the profile,
            # another instance added or removed, leaves it as it is)
            drift = manifest_drift(manifest, proc) if manifest and manifest.digest != self.plan.digest else ()
            end = int(size.text().strip() or 0) if size.ok else 0
            self._follow(proc.name, max(0, end - RECENT_BYTES))
            who = f"started by {manifest.started_by} at {started}" if manifest and manifest.started_by else found_by
            reason = status.detail or who
            foreign = (manifest.run_key if manifest else "") or self.plan.run_key
            if foreign != self.plan.run_key:
                drift = (f"started by another profile ({foreign}); `down --force` stops it", *drift)
            else:
                foreign = ""
            self._move(
                proc.name,
                "found_drifted" if drift else "found_running",
                foreign=foreign,
                pid=handle.pid,
                drift=drift,
                started_at=started,
                reason=reason,
                leftovers=status.leftovers,
            )
        elif status.state == "exited":
            self.handles[proc.name] = handle  # what it left in its group is still ours to stop
            self._ended(proc.name, status, await self.last_lines(proc.name), started_at=started, pid=handle.pid)
        else:
            self._move(proc.name, "found_nothing", reason=status.detail or "not running")

    async def _find(self, proc: ProcessPlan, directory: str) -> tuple[Manifest | None, ProcessHandle | None, str]:
        """The process of a run directory by its manifest or, that lost or unreadable, by the pid
        file the wrapper wrote itself: (manifest, handle, how it was found or why not)."""
        node = self.transports[proc.node]
        result = await node.run(scripts.read(posixpath.join(directory, manifest_file.FILE)), timeout=10)
        manifest = Manifest.decode(result.stdout) if result.ok else None
        handle = (
            manifest.handle(
                proc.node, directory, container_cli=proc.container_cli, container_pidfile=proc.container_pidfile
            )
            if manifest
            else None
        )
        if manifest and handle:
            return manifest, replace(handle, name=proc.name), "adopted"
        pidfile = await node.run(scripts.read(posixpath.join(directory, "pid")), timeout=10)
        if not pidfile.ok:
            return None, None, "never started" if not result.ok else "manifest.json does not validate and no pid file"
        like = ProcessHandle(
            proc.node, proc.name, directory, 0, 0, "", proc.container, proc.container_pidfile, proc.container_cli
        )
        handle = handle_from_pidfile(like, pidfile.stdout)
        if handle is None:
            return None, None, "manifest.json and pid file do not validate (tampered?): not acted on"
        return None, handle, "adopted by its pid file: manifest.json is missing or does not validate"

    async def refresh(self) -> None:
        """Health of every running process; headless ranks follow their master."""
        names = [n for n, v in self.views.items() if v.state in UP_STATES]
        latencies = await asyncio.gather(*(self.health(n) for n in names))
        for name, latency in zip(names, latencies, strict=True):
            self._scan(name)
            proc = self._proc(name)
            view = self.views[name]
            if not proc.http_port:
                continue
            if latency is not None and can(view.state, "answering"):
                self._move(name, "answering", health_ms=latency)
            elif latency is None and can(view.state, "not_answering"):
                self._move(name, "not_answering", health_ms=None)
            else:  # drifted and stalled keep their state (and their reason) while they answer
                self._set(name, health_ms=latency)
        for name in names:
            proc = self._proc(name)
            if not proc.http_port and can(self.views[name].state, "answering"):
                master = next(
                    (p.name for p in self.plan.processes if p.instance == proc.instance and p.http_port), None
                )
                if master and self.views[master].state in ANSWERING:
                    self._move(name, "answering")

    async def watch(self, interval: float = 1.0, health_interval: float | None = None) -> None:
        """Keep the views current while someone looks: exits (with cause and last lines) every
        `interval`, health and log progress every `health_interval` (default: as often). Runs until
        cancelled; never starts or stops anything."""
        checked = -math.inf
        while True:
            running = [n for n, v in self.views.items() if v.state in UP_STATES and n in self.handles]
            await asyncio.gather(*(self._check_exit(n) for n in running))
            if time.monotonic() - checked >= (health_interval or interval):
                checked = time.monotonic()
                await self.refresh()
            await asyncio.sleep(interval)

    async def _check_exit(self, name: str) -> None:
        try:
            status = await self._node(name).status(self.handles[name])
        except RemoteError as exc:
            self._move(name, "lost_track", reason=str(exc))
            return
        if status.state != "running":
            await self._record_end(name, status)

    async def _record_end(self, name: str, status: ProcessStatus, *, failed: bool = False) -> None:
        """A process is no longer running: its exit code, the cause read from its last lines."""
        await asyncio.sleep(0.2)  # let the tail bring in the last lines
        self._scan(name)
        self._ended(name, status, await self.last_lines(name), failed=failed, health_ms=None)

    def _ended(self, name: str, status: ProcessStatus, lines: list[str], failed: bool = False, **more: Any) -> None:
        """It no longer runs. Asked to stop: stopped. Otherwise nobody here asked it to: a known
        cause in its last lines makes it failed, whatever the exit code (vLLM's API server exits 0
        after its engine died). What its group left running is counted in `leftovers`."""
        last_line = last_news(lines) or self.views[name].last_line
        if status.stopped_by:
            self._move(
                name,
                "stopped",
                exit_code=status.exit_code,
                cause=None,
                reason=f"stopped by {status.stopped_by}",
                last_line=last_line,
                leftovers=status.leftovers,
                **more,
            )
            return
        cause = explain(lines, self._proc(name), self.plan)
        reason = cause.summary if cause else (status.detail or f"exited with code {status.exit_code}")
        self._move(
            name,
            "died" if cause or failed else "ended",
            exit_code=status.exit_code,
            cause=cause,
            reason=reason,
            last_line=last_line,
            leftovers=status.leftovers,
            **more,
        )

    def note_stall(self, name: str, reason: str | None) -> None:
        """Telemetry's verdict on a running server: stalled (with why), or moving again. Stalls the
        orchestrator saw itself (a rank waiting for its master) are not telemetry's to clear."""
        view = self.views[name]
        if reason and can(view.state, "stall_seen"):
            self._telemetry_stalls.add(name)
            self._move(name, "stall_seen", reason=reason)
        elif reason is None and name in self._telemetry_stalls:
            self._telemetry_stalls.discard(name)
            if can(view.state, "moving_again"):
                self._move(name, "moving_again", reason="moving again")

    # ------------------------------------------------------------ up, down, restart: one at a time

    @contextlib.asynccontextmanager
    async def _exclusive(
        self, verb: str, *, wait: float = 0.0, cancel_holder: bool = False
    ) -> AsyncIterator[DeploymentLock]:
        """Hold the deployment's lock for a change (DeploymentBusy when another one is under way)."""
        node, directory = lock_dir(self.plan)
        lock = DeploymentLock(self.transports[node], directory, holder_for(self.operator, verb))
        await lock.acquire(wait=wait, cancel_holder=cancel_holder)
        for notice in lock.notices:
            self._tell(notice)
        try:
            yield lock
        finally:
            await lock.release()

    async def _unless_cancelled(self, lock: DeploymentLock, work: Coroutine[Any, Any, bool]) -> bool:
        """Run a change until it ends, another operator's `down` asks it to stop, or its lock is
        lost (then another change could start: this one stops where it is)."""
        task = asyncio.ensure_future(work)
        asked = asyncio.ensure_future(lock.cancelled.wait())
        lost = asyncio.ensure_future(lock.lost.wait())
        try:
            await asyncio.wait({task, asked, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(asked, lost, task)
        if task.cancelled() and lock.lost.is_set() and not lock.cancelled.is_set():
            node, _ = lock_dir(self.plan)
            self._tell(
                f"stopped: the deployment's lock on {node} was lost (its connection dropped?), so another change "
                "could start; what this one had started is left as it is: `cpconsole status` shows it"
            )
            return False
        if task.cancelled():
            self._tell(f"cancelled: {lock.cancelled_by} is stopping this deployment")
            return False
        return task.result()

    async def up(self, only: Iterable[str] | None = None) -> bool:
        """Start what is not running, stage by stage, then probe through the proxy; stops early
        when another operator's `down` asks."""
        async with self._exclusive("up") as lock:
            return await self._unless_cancelled(lock, self._up(only))

    async def down(self, only: Iterable[str] | None = None, *, force: bool = False) -> bool:
        """Stop what runs (see _down). An `up` or `restart` under way elsewhere is asked to stop
        and waited for; another `down` is waited for."""
        async with self._exclusive("down", wait=DOWN_WAITS_S, cancel_holder=True):
            if only:  # part of the deployment: what the proxy routes to of it is drained first
                await self._drain_for(list(only))
            return await self._down(only, force=force)

    async def restart(self, target: str, *, force: bool = False) -> bool:
        """Restart a whole instance (or the proxy) in order: ranks never restart alone."""
        names = instance_of(self.plan, target)
        async with self._exclusive("restart") as lock:
            return await self._unless_cancelled(lock, self._restart(names, force))

    async def apply(self, steps: Sequence[Step]) -> bool:
        """Carry out apply's steps one at a time (see apply.changes); stop at the first that fails,
        saying what was done and what was not."""
        async with self._exclusive("apply") as lock:
            return await self._unless_cancelled(lock, self._apply(steps))

    async def _apply(self, steps: Sequence[Step]) -> bool:
        admin = ProxyAdmin(self.plan, self.transports, self._http)
        for index, step in enumerate(steps):
            self._tell(f"{index + 1}/{len(steps)} {step.text}")
            why = await self._take(step, admin)
            if why is not None:
                self._tell(
                    f"stopped at {step.action} {step.target}: {why}; {index} step(s) done, {len(steps) - index - 1} "
                    "not taken — `cpconsole status` shows what runs, `cpconsole apply` again goes on from there"
                )
                return False
        return True

    async def _take(self, step: Step, admin: ProxyAdmin) -> str | None:
        """One step; None when done, else why not."""
        if step.action == "start":
            return None if await self._up(list(step.processes)) else "it did not come up (`status` says why)"
        if step.action == "restart":
            return None if await self._restart(list(step.processes), False) else "it did not come up again"
        if step.action == "route":
            return await admin.change("add", step.backend)
        if step.action == "unroute":  # no new request goes there; those it holds end first
            await admin.drain([step.backend], self.plan.timeouts.drain, self._tell)
            return await admin.change("remove", step.backend)
        removed = self.removed.get(step.target)
        requested_by = f"{self.operator} at {time.strftime('%Y-%m-%dT%H:%M:%S')}"
        if removed is None or await self._stop_removed(removed, requested_by):
            return None
        return f"{step.target} on {removed.node} did not stop"

    async def _restart(self, names: list[str], force: bool) -> bool:
        """Stop and start again; an instance cpconsole's proxy routes to, while another of its role
        serves, is first drained (no new request, those it holds end) and taken back once it runs."""
        drained = await self._drain_for(names)
        ok = await self._down(names, force=force) and await self._up(names)
        if drained and ok:
            await ProxyAdmin(self.plan, self.transports, self._http).resume(drained, self._tell)
        elif drained:
            self._tell("it is left out of the proxy's rotation until it runs again (/instances/resume)")
        return ok

    async def _drain_for(self, names: list[str]) -> list[Backend]:
        """The proxy's backends among these processes, drained when cpconsole's proxy runs and another
        instance of each role serves meanwhile (else nothing: the backends drained, none)."""
        admin = ProxyAdmin(self.plan, self.transports, self._http)
        proxy = admin.proxy
        await self.adopt()  # whether the proxy runs to be asked
        serving = proxy is not None and proxy.name not in names and self.views[proxy.name].state in UP_STATES
        served = backends_of(self.plan, names) if serving else []
        drainable = bool(served) and others_serve(self.plan, names)
        return served if drainable and await admin.drain(served, self.plan.timeouts.drain, self._tell) else []

    def _tell(self, text: str) -> None:
        self.events.publish(Notice(text))

    # ------------------------------------------------------------ up, under the lock

    async def _up(self, only: Iterable[str] | None = None) -> bool:
        """Every instance at once (they need nothing of each other: an `up` lasts as long as the
        slowest load, not the sum); the proxy once every instance it routes to passed its gate;
        then the probe. An instance that fails stops only what depends on it: the proxy."""
        chosen = set(only) if only else None
        await self.adopt()
        every = stages(self.plan)
        instances = [stage for stage in every if stage.name != "proxy"]
        results = await asyncio.gather(*(self._bring_up(stage, chosen) for stage in instances))
        if not all(results):
            return False
        # what the proxy routes to must run while it starts: a rank that is gone fails the stage at
        # once, rather than the proxy's health waiting out its timeout for a backend that is not there
        routed = tuple(n for stage in instances for n in stage.start)
        proxies = [stage for stage in every if stage.name == "proxy"]
        if not all([await self._bring_up(stage, chosen, needs=routed) for stage in proxies]):
            return False
        if chosen is None or "proxy" in chosen:
            return await self.probe()
        return True

    async def _bring_up(self, stage: Stage, chosen: set[str] | None, needs: Sequence[str] = ()) -> bool:
        """One stage: its processes in order (a master before its headless ranks), then its gate
        (failed as soon as one of them, or of the processes it `needs`, is no longer running)."""
        names = [n for n in stage.start if chosen is None or n in chosen]
        if not names:
            return True
        self.events.publish(StageChanged(stage.name, "started"))
        for name in names:
            if self.views[name].state not in UP_STATES and not await self._start(name):
                self.events.publish(StageChanged(stage.name, "failed", f"{name} could not be started"))
                return False
        gated = Stage(stage.name, tuple(names), tuple(n for n in stage.gate if n in names), stage.timeout)
        ok, detail = await self._await_stage(gated, needs)
        self.events.publish(StageChanged(stage.name, "passed" if ok else "failed", detail))
        return ok

    async def _port_taken(self, proc: ProcessPlan) -> bool:
        """Whether something already answers on the process's HTTP port: a stale server there
        would pass our health checks in its place."""
        return bool(proc.http_port) and await tcp_state(proc.address, proc.http_port or 0, 2) == "open"

    def _key_path(self, proc: ProcessPlan) -> str:
        return posixpath.join(run_dir(self.plan, proc), KEY_FILE)

    async def _hand_key(self, proc: ProcessPlan) -> None:
        """The API key, for launch.sh to read once (and delete): a file only its user can read,
        sent on stdin — never on a command line, in the script or in the log."""
        if not proc.key_env:
            return
        if not self._api_key:
            raise RemoteError(proc.node, f"{proc.name} needs the profile's api_key, which was not read")
        result = await self._node(proc.name).run(
            scripts.hand_key(run_dir(self.plan, proc), KEY_FILE), input=self._api_key.encode(), timeout=20
        )
        if not result.ok:
            raise RemoteError(proc.node, f"cannot hand {proc.name} its API key: {result.text().strip()[-200:]}")

    async def _start(self, name: str) -> bool:
        proc = self._proc(name)
        if await self._port_taken(proc):
            cause = FailureCause(
                "port_in_use",
                "the HTTP port is already in use",
                "another server (a stale one from an earlier run?) listens there: find it with "
                "`ss -ltnp`, stop it, then start again",
                f"{proc.address}:{proc.http_port} accepts connections before {name} started",
            )
            self._move(name, "launch_failed", cause=cause, reason=f"{proc.address}:{proc.http_port} is already in use")
            return False
        try:
            await self._hand_key(proc)
            handle = await self._node(name).spawn_detached(spawn_spec(self.plan, proc, started_by=self.operator))
        except RemoteError as exc:
            if proc.key_env:  # the key must not stay at rest where nothing reads it
                with contextlib.suppress(RemoteError):
                    await self._node(name).run(f"rm -f {scripts.shell_path(self._key_path(proc))}", timeout=20)
            self._move(name, "launch_failed", reason=str(exc))
            return False
        self.handles[name] = handle
        self._launched.add(name)
        self.stores[name] = LogStore(self.stores[name].max_lines, max_chars=self.stores[name].max_chars)
        self._seen[name] = 0
        self._end_tail(name)
        self._follow(name, 0)
        self._move(
            name,
            "launched",
            pid=handle.pid,
            exit_code=None,
            cause=None,
            drift=(),
            reason="launched",
            progress="",
            started_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        return True

    async def _check_alive(self, name: str) -> bool:
        handle = self.handles.get(name)
        if handle is None:
            return False
        try:
            status = await self._node(name).status(handle)
        except RemoteError as exc:
            self._move(name, "lost_track", reason=str(exc))
            return True  # unreachable is not dead: keep waiting
        if status.state == "running":
            return True
        await self._record_end(name, status, failed=True)
        return False

    async def _await_stage(self, stage: Stage, needs: Sequence[str] = ()) -> tuple[bool, str]:
        started = time.monotonic()
        deadline = started + stage.timeout
        watched = [*stage.start, *needs]
        while time.monotonic() < deadline:
            alive = await asyncio.gather(*(self._check_alive(n) for n in watched))
            if not all(alive):
                dead = [n for n, ok in zip(watched, alive, strict=True) if not ok]
                own = [n for n in dead if n in stage.start]
                return False, f"{', '.join(own)} failed" if own else f"{', '.join(dead)}, which it needs, not running"
            for name in stage.start:
                for line in self._scan(name):
                    peer = waiting_for_peer(line)
                    if peer and can(self.views[name].state, "waiting_for_peer"):
                        self._move(
                            name, "waiting_for_peer", reason=f"waiting for the master {peer}: is node-rank 0 running?"
                        )
            if any(self.views[n].state == "stalled" for n in stage.start) and not stage.gate:
                return False, "stalled"
            if not stage.gate:  # ranks without HTTP: watch them settle a moment, then trust them
                if time.monotonic() - started > SETTLE_S:
                    return True, ""
                await asyncio.sleep(self.poll)
                continue
            latencies = await asyncio.gather(*(self.health(n) for n in stage.gate))
            for name, latency in zip(stage.gate, latencies, strict=True):
                if latency is not None and can(self.views[name].state, "gate_healthy"):
                    self._move(name, "gate_healthy", health_ms=latency)
            if all(latency is not None for latency in latencies):
                for name in stage.start:
                    if can(self.views[name].state, "gate_healthy"):
                        self._move(name, "gate_healthy")
                return True, ""
            await asyncio.sleep(self.poll)
        for name in stage.gate:
            if self.views[name].state != "healthy":
                self._move(name, "gate_timed_out", reason=f"not healthy after {stage.timeout:g} s")
        return False, f"timed out after {stage.timeout:g} s"

    async def probe(self) -> bool:
        """A 1-token request through the proxy (or each API server without one): then ready."""
        targets = [p for p in self.plan.processes if p.role == "proxy"] or [
            p for p in self.plan.processes if p.http_port
        ]
        body = {"model": self.plan.model_name, "prompt": "ping", "max_tokens": 1}
        for proc in targets:
            url = proc.base_url + "/v1/completions"
            headers = {"X-Request-Id": f"cpconsole-probe-{secrets.token_hex(6)}"}
            try:
                answer = await self._http.post(url, json=body, headers=headers, timeout=self.plan.timeouts.probe)
            except httpx.HTTPError as exc:
                self._move(proc.name, "probe_failed", reason=f"probe request failed: {exc!r}")
                self.events.publish(StageChanged("probe", "failed", str(exc)))
                return False
            if answer.status_code != 200:
                said = status_text(answer.status_code)
                self._move(proc.name, "probe_failed", reason=f"probe answered {said}: {answer.text[:200]}")
                self.events.publish(StageChanged("probe", "failed", said))
                return False
        for name, view in self.views.items():
            if can(view.state, "probe_passed"):
                self._move(name, "probe_passed")
        self.events.publish(StageChanged("probe", "passed"))
        return True

    # ------------------------------------------------------------ down, under the lock

    async def _down(self, only: Iterable[str] | None = None, *, force: bool = False) -> bool:
        """Stop running processes, instance by instance in reverse start order (the ranks of one
        instance together: a master must not see its ranks die before its own stop); True when
        nothing of them is left running. Each stop is recorded on the node as asked for. A process
        another profile started in this one's run directory is only stopped with `force`."""
        chosen = set(only) if only else None
        await self.adopt()  # under the lock: what another console started a moment ago counts too
        requested_by = f"{self.operator} at {time.strftime('%Y-%m-%dT%H:%M:%S')}"
        ok = True
        if chosen is None:  # what the profile no longer has goes first: nothing of it is routed to
            ok = all(await asyncio.gather(*(self._stop_removed(r, requested_by) for r in self.removed.values())))
        for stage in reversed(stages(self.plan)):
            names = [n for n in stage.start if (chosen is None or n in chosen) and self._needs_stop(n)]
            spared = [n for n in names if self.views[n].foreign and not force]
            for name in spared:
                self._set(
                    name,
                    reason=f"not stopped: started by another profile ({self.views[name].foreign}); --force stops it",
                )
            results = await asyncio.gather(*(self._stop(n, requested_by) for n in names if n not in spared))
            ok = all(results) and not spared and ok
        return ok

    async def _stop_removed(self, removed: RemovedProcess, requested_by: str) -> bool:
        try:
            status = await self.transports[removed.node].stop(
                removed.handle, grace=self.plan.timeouts.stop_grace, requested_by=requested_by
            )
        except RemoteError:
            return False
        if status.settled:
            del self.removed[removed.name]
        return status.settled

    def _needs_stop(self, name: str) -> bool:
        """Started by us and not stopped yet: what runs is stopped, what ended is acknowledged."""
        return name in self.handles and self.views[name].state != "stopped"

    async def _stop(self, name: str, requested_by: str) -> bool:
        view = self.views[name]
        try:
            status = await self._node(name).stop(
                self.handles[name], grace=self.plan.timeouts.stop_grace, requested_by=requested_by
            )
        except RemoteError as exc:
            self._move(name, "lost_track", reason=str(exc))
            return False
        self._end_tail(name)
        if not status.settled:
            self._move(
                name,
                "lost_track",
                reason=f"still running after SIGKILL: {status.detail}",
                leftovers=status.leftovers,
            )
            return False
        before = "" if view.state in UP_STATES or view.state == "unknown" else f" (it had {view.label}: {view.reason})"
        self._move(
            name,
            "stopped",
            exit_code=status.exit_code,
            reason=f"stopped by {requested_by}{before}",
            health_ms=None,
            leftovers=0,
            cause=None,
        )
        return True

    def _end_tail(self, name: str) -> None:
        """Stop following a log; the tail closes its stream on its own, and close() waits for it."""
        task = self._tails.pop(name, None)
        if task is not None:
            task.cancel()
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

    async def close(self) -> None:
        for name in list(self._tails):
            self._end_tail(name)
        await cancel_and_wait(*self._ending)
        if self._own_http:
            await self._http.aclose()
