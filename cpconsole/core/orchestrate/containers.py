"""Creating and removing the containers a profile declares with an image (`cpconsole containers`):
the guide's `docker run`, with every chip of the node mapped. Hand-made containers (a name only)
are checked, never created or removed."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ..plan import ContainerPlan, LaunchPlan
from ..preflight.containers import inspect
from ..remote import RemoteError, Transport


@dataclass(frozen=True)
class ContainerOutcome:
    node: str
    container: str
    done: bool  # it is as asked (created, already there, removed, already gone)
    what: str


async def create(
    plan: LaunchPlan, transports: Mapping[str, Transport], timeout: float = 120.0
) -> list[ContainerOutcome]:
    """Every container with an image that is not there yet, all nodes at once."""

    async def one(container: ContainerPlan) -> ContainerOutcome:
        if container.image is None:
            return ContainerOutcome(container.node, container.name, True, "made by hand: not created by cpconsole")
        transport = transports[container.node]
        try:
            if not isinstance(await inspect(transport, container, timeout), str):
                return ContainerOutcome(container.node, container.name, True, "already there")
            result = await transport.run(container.run_argv(), timeout=timeout)
        except RemoteError as exc:
            return ContainerOutcome(container.node, container.name, False, exc.what)
        said = result.text().strip()
        if not result.ok:
            return ContainerOutcome(container.node, container.name, False, said[-300:] or "docker run failed")
        return ContainerOutcome(container.node, container.name, True, f"created from {container.image} ({said[:12]})")

    return list(await asyncio.gather(*(one(c) for c in plan.containers)))


async def remove(
    plan: LaunchPlan, transports: Mapping[str, Transport], running: Collection[str], timeout: float = 60.0
) -> list[ContainerOutcome]:
    """Every container with an image in which none of the profile's processes runs (`running`:
    the names of those that do), with `docker rm --force`."""

    async def one(container: ContainerPlan) -> ContainerOutcome:
        if container.image is None:
            return ContainerOutcome(container.node, container.name, True, "made by hand: not removed by cpconsole")
        inside = [
            p.name
            for p in plan.processes
            if p.node == container.node and p.container == container.name and p.name in running
        ]
        if inside:
            return ContainerOutcome(
                container.node, container.name, False, f"{', '.join(inside)} still running in it: cpconsole down first"
            )
        transport = transports[container.node]
        try:
            result = await transport.run([*container.cli, "rm", "--force", container.name], timeout=timeout)
        except RemoteError as exc:
            return ContainerOutcome(container.node, container.name, False, exc.what)
        said = result.text().strip()
        if result.ok:
            return ContainerOutcome(container.node, container.name, True, "removed")
        if "No such container" in said:
            return ContainerOutcome(container.node, container.name, True, "already gone")
        return ContainerOutcome(container.node, container.name, False, said[-300:] or "docker rm failed")

    return list(await asyncio.gather(*(one(c) for c in plan.containers)))
