"""Preflight of the containers a node's processes run in (the guide's `docker run` ones)."""

from __future__ import annotations

from ..plan import LaunchPlan, NodePlan
from ..remote import RemoteError, Transport
from .report import Check


async def container_checks(plan: LaunchPlan, node: NodePlan, transport: Transport, timeout: float) -> list[Check]:
    """Each container the node's processes run in: there and running, every chip mapped, setsid inside."""
    out: list[Check] = []
    for container in dict.fromkeys(p.container for p in plan.processes if p.node == node.name and p.container):
        form = "{{.State.Running}} {{.HostConfig.Privileged}} {{range .HostConfig.Devices}}{{.PathOnHost}} {{end}}"
        try:
            result = await transport.run([*node.tools.docker, "inspect", "--format", form, container], timeout=timeout)
        except RemoteError as exc:
            out.append(Check(node.name, "container", "FAIL", exc.what, "is docker installed?"))
            continue
        words = result.text().split()
        if not result.ok or len(words) < 2:
            why = (result.stderr or result.stdout).decode("utf-8", "replace").strip()[:200] or "no answer"
            out.append(
                Check(
                    node.name,
                    "container",
                    "FAIL",
                    f"{container}: {why}",
                    "create it with the guide's `docker run` (name it as the profile says)",
                )
            )
            continue
        running = words[0] == "true"
        state = "running" if running else "not running"
        out.append(
            Check.verdict(
                node.name, "container", running, f"{container} {state}", f"docker start {container}", same="running"
            )
        )
        if running:
            out.append(await _setsid_in(node, transport, container, timeout))
        if words[1] == "true":
            out.append(
                Check(
                    node.name,
                    "devices",
                    "PASS",
                    f"{container} is privileged: every device",
                    same=f"{node.chips} chips mapped",
                )
            )
            continue
        mapped = set(words[2:])
        missing = [i for i in range(node.chips) if f"/dev/davinci{i}" not in mapped]
        out.append(
            Check(
                node.name,
                "devices",
                "FAIL" if missing else "PASS",
                f"{container} lacks /dev/davinci{', '.join(map(str, missing))}"
                if missing
                else f"{container} maps /dev/davinci0-{node.chips - 1}",
                f"map every chip: --device /dev/davinci0 … /dev/davinci{node.chips - 1} "
                "(the guide's docker run maps only 8)"
                if missing
                else "",
                same=f"{node.chips} chips mapped",
            )
        )
    return out


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
