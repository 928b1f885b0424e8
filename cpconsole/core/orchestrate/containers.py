"""Creating and removing the containers a profile declares with an image (`cpconsole containers`):
the image pulled on every node at once (its own step: a many-GB image takes long), the same digest
everywhere, then the guide's `docker run`, with every chip of the node mapped. Hand-made containers
(a name only) are checked, never created or removed."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import Callable, Collection, Mapping
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


@dataclass(frozen=True)
class PullProgress:
    """A pull on one node: layers pulled of those it named so far (docker's non-terminal output:
    one "<layer>: Pulling fs layer" or "Already exists" per layer, "Pull complete" when done)."""

    node: str
    image: str
    done: int
    layers: int
    finished: bool = False


_LAYER = re.compile(r"^([0-9a-f]{12,64}): (Pulling fs layer|Already exists|Pull complete|Waiting)\s*$")
_EXIT = "cpconsole-pull-exit "


async def _pull(
    transport: Transport, container: ContainerPlan, timeout: float, progress: Callable[[PullProgress], None]
) -> str | None:
    """`docker pull` of the container's image on its node, progress as layers complete; None when
    pulled, else why not."""
    assert container.image is not None
    script = f"{shlex.join([*container.cli, 'pull', container.image])} 2>&1; echo {_EXIT}$?"
    layers: dict[str, bool] = {}
    tail: list[str] = []
    try:
        stream = await transport.open_stream(script)
    except RemoteError as exc:
        return exc.what
    try:
        async with asyncio.timeout(timeout):
            partial = b""
            while chunk := await stream.read():
                *lines, partial = (partial + chunk).split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace").strip()
                    if line.startswith(_EXIT):
                        code = line.removeprefix(_EXIT)
                        progress(PullProgress(container.node, container.image, sum(layers.values()), len(layers), True))
                        return None if code == "0" else ("; ".join(tail[-2:]) or f"docker pull exited {code}")[-300:]
                    tail.append(line)
                    found = _LAYER.match(line)
                    if found:
                        layers[found[1]] = found[2] in ("Already exists", "Pull complete")
                        progress(PullProgress(container.node, container.image, sum(layers.values()), len(layers)))
    except TimeoutError:
        return f"the pull took longer than timeouts.pull ({timeout:g} s)"
    finally:
        await stream.close()
    return "; ".join(tail[-2:])[-300:] or "docker pull ended without a word"


async def _digests(transport: Transport, container: ContainerPlan, timeout: float) -> set[str] | str:
    """The repository digests of the node's copy of the image (`docker image inspect`), or why not."""
    assert container.image is not None
    argv = [*container.cli, "image", "inspect", "--format", "{{json .RepoDigests}}", container.image]
    try:
        result = await transport.run(argv, timeout=timeout)
    except RemoteError as exc:
        return exc.what
    if not result.ok:
        return result.text().strip()[-300:] or "docker image inspect failed"
    try:
        return {str(d).rsplit("@", 1)[-1] for d in json.loads(result.text())}
    except (ValueError, TypeError):
        return f"docker image inspect printed no digests: {result.text().strip()[:100]}"


async def create(
    plan: LaunchPlan,
    transports: Mapping[str, Transport],
    *,
    progress: Callable[[PullProgress], None] = lambda _: None,
    timeout: float = 120.0,
) -> list[ContainerOutcome]:
    """Every container with an image that is not there yet: its image pulled on every such node at
    once (bounded by timeouts.pull), the nodes' copies checked to be one image (a tag moved between
    pulls is refused), then created — all or none of them."""
    wanted: list[ContainerPlan] = []
    outcomes: dict[tuple[str, str], ContainerOutcome] = {}

    async def look(container: ContainerPlan) -> None:
        if container.image is None:
            outcome = ContainerOutcome(container.node, container.name, True, "made by hand: not created by cpconsole")
        else:
            try:
                there = not isinstance(await inspect(transports[container.node], container, timeout), str)
            except RemoteError as exc:
                outcomes[container.node, container.name] = ContainerOutcome(
                    container.node, container.name, False, exc.what
                )
                return
            if not there:
                wanted.append(container)
                return
            outcome = ContainerOutcome(container.node, container.name, True, "already there")
        outcomes[container.node, container.name] = outcome

    await asyncio.gather(*(look(c) for c in plan.containers))
    pulled = await asyncio.gather(*(_pull(transports[c.node], c, plan.timeouts.pull, progress) for c in wanted))
    digests = await asyncio.gather(*(_digests(transports[c.node], c, timeout) for c in wanted))
    refused = ""
    for container, failure, found in zip(wanted, pulled, digests, strict=True):
        why = failure or (found if isinstance(found, str) else None)
        if why:
            outcomes[container.node, container.name] = ContainerOutcome(container.node, container.name, False, why)
            refused = refused or f"the pull failed on {container.node}"
    for image in {c.image for c in wanted}:
        seen = {c.node: d for c, d in zip(wanted, digests, strict=True) if c.image == image and isinstance(d, set)}
        if seen and not set.intersection(*seen.values()):
            refused = refused or f"the nodes pulled different images for {image}: " + ", ".join(
                f"{node} {sorted(d)[0][:19]}" for node, d in sorted(seen.items())
            )

    async def run(container: ContainerPlan) -> ContainerOutcome:
        if refused:
            return ContainerOutcome(container.node, container.name, False, f"not created: {refused}")
        try:
            result = await transports[container.node].run(container.run_argv(), timeout=timeout)
        except RemoteError as exc:
            return ContainerOutcome(container.node, container.name, False, exc.what)
        said = result.text().strip()
        if not result.ok:
            return ContainerOutcome(container.node, container.name, False, said[-300:] or "docker run failed")
        return ContainerOutcome(container.node, container.name, True, f"created from {container.image} ({said[:12]})")

    for outcome in await asyncio.gather(*(run(c) for c in wanted if (c.node, c.name) not in outcomes)):
        outcomes[outcome.node, outcome.container] = outcome
    return [outcomes[c.node, c.name] for c in plan.containers]


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
