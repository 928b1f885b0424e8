"""What a bundle reads from each node, as the nodes give it: npu-smi, every chip's network port
by hccn_tool, the driver's and the installed software's versions (asked where the server runs),
CANN's plog files of the window, and each process's log window, manifest and state. One node's
failure is a missing piece, never the end of the bundle."""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from ..plan import LaunchPlan, NodePlan, ProcessPlan
from ..preflight.node import version_script
from ..remote import RemoteError, Transport, manifest, scripts
from ..remote.launch import run_dir
from ..render import in_place
from .archive import Archive

LOG_LINES = 2000  # of each process's log: a failed process's last lines hold its failure
PLOG_FILES = 20  # newest plog files of the window, per node
PLOG_BYTES = 256 << 10  # of each plog file, its end
DRIVER_INFO = "/usr/local/Ascend/driver/version.info"
# CANN's log directory: ASCEND_PROCESS_LOG_PATH when the process's environment sets it, else the home's
PLOG_DIR = "${ASCEND_PROCESS_LOG_PATH:-$HOME/ascend/log}/debug/plog"
HCCN_QUERIES = ("-link", "-ip", "-tls", "-net_health")  # each `-g`: a chip port's state as hccn_tool tells it
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Piece:
    name: str  # its path in the bundle
    node: str
    script: str
    what: str  # said in the summary when it is missing


def sections(commands: list[tuple[str, list[str]]]) -> str:
    """sh running each command in turn, its output after a `== label` line (a failing one too)."""
    lines = [f"echo {shlex.quote('== ' + label)}; {shlex.join(argv)} 2>&1" for label, argv in commands]
    return "\n".join([*lines, "true"])


def plog_script(since_epoch: int) -> str:
    """`BYTES SIZE PATH` then the file's last BYTES, for the newest PLOG_FILES plog files written
    since `since_epoch`; exit 3 when there is no plog directory."""
    return (
        f'cd "{PLOG_DIR}" 2>/dev/null || exit 3\n'
        f"find . -maxdepth 2 -type f -name '*.log' -newermt @{int(since_epoch)} -printf '%T@ %s %p\\n' "
        f"| sort -rn | head -n {PLOG_FILES} | while read -r _ size file; do\n"
        f'  n=$size; [ "$n" -gt {PLOG_BYTES} ] && n={PLOG_BYTES}\n'
        '  printf \'%s %s %s\\n\' "$n" "$size" "$file"\n'
        '  tail -c "$n" "$file"\n'
        "done"
    )


def parse_plogs(data: bytes) -> list[tuple[str, int, bytes]]:
    """(path, size, its end) of each file a plog_script printed."""
    found, rest = [], data
    while rest:
        head, _, rest = rest.partition(b"\n")
        count, size, path = head.decode("utf-8", "replace").split(" ", 2)
        # a name inside the plog directory, whatever the node printed: no way up or out of it
        inside = "/".join(part for part in path.split("/") if part not in ("", ".", ".."))
        found.append((inside or "unnamed", int(size), rest[: int(count)]))
        rest = rest[int(count) :]
    return found


def node_pieces(plan: LaunchPlan, node: NodePlan) -> list[Piece]:
    base = f"nodes/{node.name}/"
    pieces = [
        Piece(base + "npu-smi.txt", node.name, scripts.capped(node.tool("npu_smi", "info")), "npu-smi info"),
        Piece(base + "driver.txt", node.name, scripts.read(DRIVER_INFO), f"the driver's {DRIVER_INFO}"),
    ]
    if node.chips:
        hccn = [
            (f"hccn_tool -i {chip} {query} -g", node.tool("hccn_tool", "-i", str(chip), query, "-g"))
            for chip in range(node.chips)
            for query in HCCN_QUERIES
        ]
        pieces.append(Piece(base + "hccn.txt", node.name, scripts.capped(["sh", "-c", sections(hccn)]), "hccn_tool"))
    server = next((p for p in plan.processes if p.node == node.name and p.role in ("prefill", "decode")), None)
    if server is not None:
        pieces.append(Piece(base + "versions.txt", node.name, version_script(node, server), "installed versions"))
    return pieces


def process_pieces(plan: LaunchPlan, proc: ProcessPlan) -> list[Piece]:
    directory = run_dir(plan, proc)
    base = f"processes/{proc.name}/"
    return [
        Piece(
            base + "log.txt",
            proc.node,
            scripts.log_slice(posixpath.join(directory, scripts.LOG), lines=LOG_LINES),
            "its log",
        ),
        Piece(
            base + "manifest.json", proc.node, scripts.read(posixpath.join(directory, manifest.FILE)), "its manifest"
        ),
        Piece(base + "state.txt", proc.node, scripts.status(directory), "its run directory's state"),
    ]


@dataclass(frozen=True)
class PlogPlace:
    folder: str  # under nodes/NODE/
    where: str  # said when it is missing
    wrap: Callable[[str], str]  # a script, made to run there


def plog_places(plan: LaunchPlan, node: NodePlan) -> list[PlogPlace]:
    """Where a node's plogs are: the node's (its login user's CANN log directory), and where its
    first server runs when that is a container (the container's home, the server's environment)."""
    places = [PlogPlace("plog", "the node", lambda script: script)]
    server = next((p for p in plan.processes if p.node == node.name and p.role in ("prefill", "decode")), None)
    if server is not None and server.container:
        places.append(PlogPlace("plog-container", f"container {server.container}", lambda s: in_place(server, s)))
    elif server is not None:  # the server's own environment may point ASCEND_PROCESS_LOG_PATH elsewhere
        places[0] = PlogPlace("plog", "the node", lambda script: in_place(server, script))
    return places


async def read_piece(transport: Transport, piece: Piece, archive: Archive) -> None:
    try:
        answer = await transport.run(piece.script, timeout=TIMEOUT_S)
    except RemoteError as exc:
        archive.lack(f"{piece.what} on {piece.node}", exc.what)
        return
    data = answer.stdout
    if piece.name.endswith("/log.txt") and answer.ok:
        data = scripts.parse_log_slice(data)[2]
    if not answer.ok and not data:
        why = answer.stderr.decode("utf-8", "replace").strip()[-300:] or f"exit {answer.exit_code}"
        archive.lack(f"{piece.what} on {piece.node}", why)
        return
    archive.add(piece.name, data)


async def read_plogs(plan: LaunchPlan, node: NodePlan, transport: Transport, since: float, archive: Archive) -> None:
    for place in plog_places(plan, node):
        await _read_plogs(node, transport, since, archive, place)


async def _read_plogs(node: NodePlan, transport: Transport, since: float, archive: Archive, place: PlogPlace) -> None:
    what = f"plog on {node.name} ({place.where})"
    try:
        answer = await transport.run(place.wrap(plog_script(int(since))), timeout=TIMEOUT_S)
    except RemoteError as exc:
        archive.lack(what, exc.what)
        return
    if answer.exit_code == 3:
        archive.lack(what, f"no {PLOG_DIR}")
        return
    try:
        files = parse_plogs(answer.stdout)
    except ValueError:
        archive.lack(what, "its listing could not be read")
        return
    if not files:
        archive.lack(what, "no plog file written in the window")
    for path, size, end in files:
        name = f"nodes/{node.name}/{place.folder}/{path}"
        archive.add(name, end)
        if len(end) < size:
            archive.cut.append(f"{name}: its last {len(end)} of {size} bytes (plog cap)")
