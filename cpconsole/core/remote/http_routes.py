"""cpconsole's HTTP to the nodes' servers by the route each node's `http` says: straight to its
address, or through its SSH connection — a jump host that reaches the nodes by SSH only (the usual
bastion set-up) still reads readiness, health, metrics and answers. `auto` tries the address once
and keeps what worked. Over SSH, each server gets a forwarded UNIX socket in a directory only this
user may enter (a loopback port would let any local user reach the node)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx

from ..httpclient import tcp_state
from ..plan import NodePlan
from .base import Transport

DIRECT_PROBE_S = 2.0  # auto: how long the first connection to a node's address may take

MakeTransport = Callable[[str | None], httpx.AsyncHTTPTransport]  # a UNIX socket's path, or None: TCP


@runtime_checkable
class Forwarding(Protocol):
    """A node transport that forwards a local UNIX socket to host:port as the node reaches it
    (SSHTransport; named by behaviour, so that all-local deployments never import asyncssh)."""

    node: str

    async def forward(self, host: str, port: int, path: str, *, timeout: float = ...) -> None: ...


async def answers(host: str, port: int, timeout: float = DIRECT_PROBE_S) -> bool:
    """The address is reached from here: a connection made, or refused (its server not up yet)."""
    return await tcp_state(host, port, timeout) != "unreachable"


class Route:
    """How one node's servers are reached; `via_ssh` None while `auto` has not tried yet."""

    def __init__(self, index: int, node: NodePlan, ssh: Forwarding | None, sockets: Path, make: MakeTransport):
        self.node = node
        self._index, self._ssh, self._sockets, self._make = index, ssh, sockets, make
        self.via_ssh: bool | None = {"direct": False, "ssh": True, "auto": None}[node.http] if ssh else False
        self._deciding = asyncio.Lock()
        self._forwarded: dict[int, httpx.AsyncHTTPTransport] = {}

    @property
    def shown(self) -> str:
        """For the board: direct, ssh, or auto while undecided."""
        return {True: "ssh", False: "direct", None: "auto"}[self.via_ssh]

    async def transport(self, port: int) -> httpx.AsyncHTTPTransport | None:
        """The transport through SSH to this port of the node, or None: go straight."""
        if self.via_ssh is None:
            async with self._deciding:
                if self.via_ssh is None:
                    self.via_ssh = not await answers(self.node.address, port)
        if not self.via_ssh or self._ssh is None:
            return None
        path = str(self._sockets / f"{self._index}-{port}")  # short: a socket path has ~100 bytes
        await self._ssh.forward(self.node.address, port, path)
        if port not in self._forwarded:
            self._forwarded[port] = self._make(path)
        return self._forwarded[port]

    async def aclose(self) -> None:
        for transport in self._forwarded.values():
            await transport.aclose()


class NodeRoutes(httpx.AsyncBaseTransport):
    """An httpx transport: a request to a node's address goes by that node's route, any other
    straight (the proxy's backends, webhooks are not the nodes' business)."""

    def __init__(self, nodes: tuple[NodePlan, ...], transports: Mapping[str, Transport], make: MakeTransport):
        self._direct = make(None)
        self._sockets = Path(tempfile.mkdtemp(prefix="cpconsole-http-"))  # mode 700: this user's alone
        self.routes = {
            node.address: Route(
                index,
                node,
                ssh if isinstance(ssh := transports.get(node.name), Forwarding) else None,
                self._sockets,
                make,
            )
            for index, node in enumerate(nodes)
        }

    def shown(self) -> dict[str, str]:
        """Each node's route, by name: direct, ssh, or auto (not tried yet)."""
        return {route.node.name: route.shown for route in self.routes.values()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = self.routes.get(request.url.host)
        chosen = await route.transport(request.url.port or 80) if route is not None else None
        return await (chosen or self._direct).handle_async_request(request)

    async def aclose(self) -> None:
        await self._direct.aclose()
        for route in self.routes.values():
            await route.aclose()
        shutil.rmtree(self._sockets, ignore_errors=True)
