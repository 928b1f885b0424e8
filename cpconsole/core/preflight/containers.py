"""The containers a node's processes run in, against the profile: running, on the host's network,
every chip and the driver's devices mapped, `setsid` inside; for a container cpconsole creates,
also its image, mounts and shared memory — read from `docker inspect`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any

from ..plan import ContainerPlan, LaunchPlan, NodePlan
from ..remote import RemoteError, Transport
from .report import Check

UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size_bytes(size: str) -> int:
    """docker's --shm-size: a number and an optional unit b, k, m or g (none: bytes)."""
    match = re.fullmatch(r"(\d+)([bkmg]?)", size.lower())
    if match is None:
        raise ValueError(f"not a size: {size!r}")
    return int(match.group(1)) * UNITS[match.group(2)]


async def inspect(transport: Transport, container: ContainerPlan, timeout: float) -> dict[str, Any] | str:
    """What `docker inspect` says of the container, or why it could not say."""
    result = await transport.run([*container.cli, "inspect", container.name], timeout=timeout)
    why = (result.stderr or result.stdout).decode("utf-8", "replace").strip()[:200]
    if not result.ok:
        return why or f"docker inspect exited {result.exit_code}"
    try:
        found = json.loads(result.stdout)
        return dict(found[0])
    except (ValueError, LookupError, TypeError):
        return f"unreadable docker inspect output: {why[:80]}"


def inspected_checks(node: NodePlan, container: ContainerPlan, found: dict[str, Any]) -> list[Check]:
    """The checks `docker inspect`'s answer settles (setsid needs a look inside)."""
    name, host = container.name, node.name
    state, config = found.get("State") or {}, found.get("HostConfig") or {}
    running = state.get("Running") is True
    out = [
        Check.verdict(
            host,
            "container",
            running,
            f"{name} {'running' if running else 'not running'}",
            f"docker start {name}",
            same="running",
        )
    ]
    network = config.get("NetworkMode") or "?"
    hint = "HCCL and the kv connector need the node's own addresses: create it with --net=host"
    out.append(Check.verdict(host, "container network", network == "host", f"{name}: {network}", hint, same="host"))
    if config.get("Privileged") is True:
        out.append(Check(host, "devices", "PASS", f"{name} is privileged: every device", same="every device mapped"))
    else:
        mapped = {d.get("PathOnHost") for d in config.get("Devices") or () if isinstance(d, dict)}
        missing = [d for d in container.devices if d not in mapped]
        chips = [d.removeprefix("/dev/davinci") for d in missing if d.removeprefix("/dev/davinci").isdigit()]
        others = [d for d in missing if not d.removeprefix("/dev/davinci").isdigit()]
        listed = ([f"/dev/davinci{', '.join(chips)}"] if chips else []) + others
        evidence = f"{name} lacks {', '.join(listed)}" if missing else f"{name} maps {len(container.devices)} devices"
        hint = "map every chip and the driver's devices: --device " + " --device ".join(missing)
        if chips:
            hint += " (the guide's docker run maps only 8 of 16 chips)"
        out.append(Check.verdict(host, "devices", not missing, evidence, hint, same="every device mapped"))
    if container.image is not None:
        out += _made_as_declared(host, container, found)
    return out


def _made_as_declared(host: str, container: ContainerPlan, found: dict[str, Any]) -> list[Check]:
    """Image, mounts and shared memory of a container cpconsole creates."""
    name, config = container.name, found.get("HostConfig") or {}
    again = "cpconsole containers PROFILE remove, then create"
    image = (found.get("Config") or {}).get("Image")
    same_image = image == container.image
    hint = "" if same_image else f"the profile says {container.image}: {again}"
    out = [Check(host, "container image", "PASS" if same_image else "WARN", f"{name}: {image}", hint, same=image or "")]
    mounted = _mounted(found)
    missing = [m for m in container.mounts if m.rstrip("/") not in mounted]
    evidence = f"{name} lacks {', '.join(missing)}" if missing else f"{name} mounts {len(container.mounts)} paths"
    out.append(Check.verdict(host, "mounts", not missing, evidence, again, same="the driver, tools and model"))
    shm, want = config.get("ShmSize"), size_bytes(container.shm_size)
    enough = isinstance(shm, int) and shm >= want
    evidence = f"{name}: /dev/shm of {shm // 1024**2 if isinstance(shm, int) else '?'} MiB"
    hint = f"the profile wants {container.shm_size}: {again}"
    out.append(Check.verdict(host, "shared memory", enough, evidence, hint, same=f"at least {container.shm_size}"))
    return out


def _mounted(found: dict[str, Any]) -> set[str]:
    """Paths mounted in the container: HostConfig.Binds ("src:dst[:options]") and Mounts."""
    paths = set()
    for bind in (found.get("HostConfig") or {}).get("Binds") or ():
        parts = str(bind).split(":")
        paths.add(parts[1] if len(parts) > 1 else parts[0])
    paths |= {str(m.get("Destination")) for m in found.get("Mounts") or () if isinstance(m, dict)}
    return {path.rstrip("/") for path in paths}


async def container_checks(plan: LaunchPlan, node: NodePlan, transport: Transport, timeout: float) -> list[Check]:
    """Each container the node's processes run in, as the profile says it should be."""
    out: list[Check] = []
    for container in (c for c in plan.containers if c.node == node.name):
        try:
            found = await inspect(transport, container, timeout)
        except RemoteError as exc:
            out.append(Check(node.name, "container", "FAIL", exc.what, "is docker installed?"))
            continue
        if isinstance(found, str):
            hint = (
                "cpconsole containers PROFILE create"
                if container.image
                else "create it with the guide's `docker run` (name it as the profile says)"
            )
            out.append(Check(node.name, "container", "FAIL", f"{container.name}: {found}", hint))
            continue
        out += inspected_checks(node, container, found)
        if (found.get("State") or {}).get("Running") is True:
            out.append(await _setsid_in(node, transport, container.name, timeout))
    return out


async def check_containers(plan: LaunchPlan, transports: Mapping[str, Transport], timeout: float = 20.0) -> list[Check]:
    """`container_checks` on every node that runs something in a container, all at once (a node
    that does not answer fails its own checks, as there)."""
    nodes = [n for n in plan.nodes if any(c.node == n.name for c in plan.containers)]
    found = await asyncio.gather(*(container_checks(plan, n, transports[n.name], timeout) for n in nodes))
    return [check for checks in found for check in checks]


async def _setsid_in(node: NodePlan, transport: Transport, container: str, timeout: float) -> Check:
    """Processes start in their container under `setsid -w` (docker exec forwards no signal, so
    stop signals their group in there): util-linux's setsid must be in the image."""
    try:
        probe = [*node.tools.docker, "exec", container, "sh", "-c", "command -v setsid"]
        result = await transport.run(probe, timeout=timeout)
        found = result.ok and bool(result.stdout.strip())
    except RemoteError:
        found = False
    if found:
        return Check(node.name, "setsid", "PASS", f"{container} has setsid", same="in the container")
    return Check(
        node.name,
        "setsid",
        "FAIL",
        f"no setsid in {container}",
        "install util-linux in the image: cpconsole starts and stops processes in there with it",
    )
