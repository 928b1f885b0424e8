"""An instance taken out of cpconsole's proxy's rotation while it is restarted: no new request goes
to it, those it holds end (bounded by `timeouts.drain`), and it is put back once it serves again.
The proxy's instance API is asked with the admin token cpconsole handed the proxy at its start
(ADMIN_FILE in its run directory, read over the proxy node's own connection)."""

from __future__ import annotations

import asyncio
import posixpath
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx

from ..plan import LaunchPlan, ProcessPlan
from ..remote import RemoteError, Transport, scripts
from ..remote.launch import run_dir
from ..render import ADMIN_FILE
from ..telemetry.vllm_metrics import parse_metrics
from .stages import instance_of

ROLES = ("prefill", "decode")  # what the proxy routes to


@dataclass(frozen=True)
class Backend:
    """An API server as the proxy knows it."""

    role: str  # prefill | decode
    instance: str  # host:port


def backends_of(plan: LaunchPlan, names: Sequence[str]) -> list[Backend]:
    """The proxy's backends among these processes (an instance's API server)."""
    chosen = [plan.process(n) for n in names]
    return [Backend(p.role, f"{p.address}:{p.http_port}") for p in chosen if p.http_port and p.role in ROLES]


def others_serve(plan: LaunchPlan, names: Sequence[str]) -> bool:
    """Whether another instance of each role among these processes goes on serving meanwhile."""
    chosen = {plan.process(n).instance for n in names}
    for role in {plan.process(n).role for n in names} & set(ROLES):
        if not {p.instance for p in plan.processes if p.role == role and p.http_port} - chosen:
            return False
    return True


def interrupts_service(plan: LaunchPlan, target: str) -> str | None:
    """Why restarting `target` interrupts the service (None: another instance serves meanwhile)."""
    names = instance_of(plan, target)
    first = plan.process(names[0])
    if first.role == "proxy":
        return "the proxy is the one way in: every request fails while it restarts"
    if not others_serve(plan, names):
        return f"{first.instance} is the only {first.role} instance: requests fail while it restarts"
    return None


ADMINISTERED = ("cpconsole", "vllm-ascend-example")  # proxies whose instance API cpconsole uses


class ProxyAdmin:
    """The proxy's instance API, for drain, resume and apply's routes: cpconsole's (authenticated,
    per-backend drain and counts) or the guide's example proxy's (vllm-ascend v0.15.0rc1: open,
    and a removed backend that still has requests in the proxy stays listed, out of rotation,
    until the proxy holds no request at all)."""

    def __init__(self, plan: LaunchPlan, transports: Mapping[str, Transport], http: httpx.AsyncClient) -> None:
        self.proxy: ProcessPlan | None = next(
            (p for p in plan.processes if p.role == "proxy" and p.proxy_kind in ADMINISTERED), None
        )
        self.plan, self.transports, self.http = plan, transports, http

    @property
    def example(self) -> bool:
        return self.proxy is not None and self.proxy.proxy_kind == "vllm-ascend-example"

    async def _token(self) -> str:
        assert self.proxy is not None
        path = posixpath.join(run_dir(self.plan, self.proxy), ADMIN_FILE)
        result = await self.transports[self.proxy.node].run(scripts.read(path), timeout=10)
        token = result.text().strip()
        if not result.ok or not token:
            raise RemoteError(self.proxy.node, f"cannot read the proxy's admin token ({path})")
        return token

    async def _call(self, action: str, backend: Backend) -> httpx.Response:
        assert self.proxy is not None
        body: dict[str, object] = {"type": backend.role, "instances": [backend.instance]}
        if self.example:  # its API asks for no credential
            return await self.http.post(self.proxy.base_url + f"/instances/{action}", json=body, timeout=10)
        headers = {"Authorization": f"Bearer {await self._token()}"}
        if action == "add":
            body["trusted"] = True  # one of the profile's own: it gets the API key as the others
        return await self.http.post(
            self.proxy.base_url + f"/instances/{action}", json=body, headers=headers, timeout=10
        )

    async def routed(self) -> set[Backend] | None:
        """The backends the proxy routes to now (None: it is not cpconsole's, or did not answer)."""
        if self.proxy is None:
            return None
        try:
            if self.example:  # only its add and remove answers list them: an add of nothing changes nothing
                empty = {"type": "prefill", "instances": []}
                shown = (await self.http.post(self.proxy.base_url + "/instances/add", json=empty, timeout=10)).json()
                return {Backend(role, str(b)) for role in ROLES for b in shown[f"current_{role}_instances"]}
            shown = (await self.http.get(self.proxy.base_url + "/healthcheck", timeout=10)).json()
            return {Backend(role, str(b["instance"])) for role in ROLES for b in shown["backends"][role]}
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    async def change(self, action: str, backend: Backend) -> str | None:
        """add or remove a backend; None when done, else why not."""
        try:
            answer = await self._call(action, backend)
        except (httpx.HTTPError, RemoteError) as exc:
            return f"the proxy could not be asked: {exc}"
        if answer.status_code == 200 and not (self.example and "error" in answer.text[:200]):
            return None
        return f"the proxy answered {answer.status_code}: {answer.text[:200]}"

    async def held(self, backend: Backend) -> int | None:
        """Requests the proxy has in flight to it (None: the proxy does not know it or did not answer)."""
        assert self.proxy is not None
        try:
            shown = (await self.http.get(self.proxy.base_url + "/healthcheck", timeout=10)).json()
            listed = shown["backends"][backend.role]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        return next((int(b["active"]) for b in listed if b.get("instance") == backend.instance), None)

    async def drain(
        self, backends: Sequence[Backend], timeout: float, told: Callable[[str], None], poll: float = 0.25
    ) -> bool:
        """Out of rotation, then until none of them holds a request (or `timeout`): True when
        every one was drained and emptied."""
        if self.proxy is None or not backends:
            return False
        if self.example:
            return await self._drain_example(backends, timeout, told, poll)
        try:
            answers = [await self._call("drain", b) for b in backends]
        except (httpx.HTTPError, RemoteError) as exc:
            told(f"the proxy could not be asked to drain ({exc}); restarting without")
            return False
        if any(a.status_code != 200 for a in answers):
            told(f"the proxy refused to drain: {answers[0].text[:200]}; restarting without")
            return False
        told(f"draining {', '.join(b.instance for b in backends)}: out of the proxy's rotation")
        deadline, said = time.monotonic() + timeout, None
        while True:
            left = sum(h or 0 for h in [await self.held(b) for b in backends])
            if left == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                told(f"{left} request(s) still in flight after {timeout:g} s of draining: stopping anyway")
                return True
            if left != said:
                told(f"draining: {left} request(s) in flight, at most {remaining:.0f} s more")
                said = left
            await asyncio.sleep(poll)

    async def _drain_example(
        self, backends: Sequence[Backend], timeout: float, told: Callable[[str], None], poll: float
    ) -> bool:
        """The example proxy: removed (out of rotation at once; it lists a removed backend until it
        holds no request at all, whoever's, so its list cannot say when) — then until each server
        says by its own /metrics that it runs and queues nothing (or `timeout`)."""
        for backend in backends:
            why = await self.change("remove", backend)
            if why is not None:
                told(f"the example proxy could not be asked to remove {backend.instance} ({why}); restarting without")
                return False
        told(f"draining {', '.join(b.instance for b in backends)}: out of the example proxy's rotation")
        deadline = time.monotonic() + timeout
        while busy := [b for b in backends if not await self._idle(b)]:
            if time.monotonic() >= deadline:
                told(
                    f"{', '.join(b.instance for b in busy)} still busy after {timeout:g} s of draining: stopping anyway"
                )
                break
            await asyncio.sleep(poll)
        return True

    async def _idle(self, backend: Backend) -> bool:
        """Whether the server runs and queues no request, by its own /metrics (or is gone). Only a
        server on one of the deployment's nodes is asked (an instance removed from the profile runs
        there too): an address the proxy lists is not by itself one to connect to."""
        host = backend.instance.rsplit(":", 1)[0].strip("[]")
        if host not in {n.address for n in self.plan.nodes}:
            return True
        try:
            answer = await self.http.get(f"http://{backend.instance}/metrics", timeout=10)
        except httpx.HTTPError:
            return True  # nothing answers there: nothing of it to wait for
        total = parse_metrics(answer.text).total
        return total.running + total.waiting == 0

    async def resume(self, backends: Sequence[Backend], told: Callable[[str], None]) -> None:
        action = "add" if self.example else "resume"
        try:
            for backend in backends:
                await self._call(action, backend)
        except (httpx.HTTPError, RemoteError) as exc:
            told(f"the proxy could not be asked to take it back ({exc}): /instances/resume by hand")
