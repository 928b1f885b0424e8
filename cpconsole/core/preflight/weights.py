"""The model's weights on every node: every shard the safetensors index names, with its size (a
half-copied shard differs from the other nodes'; an mtime says nothing of the bytes and is never
compared) — and, on request, every shard's sha256 on every node at once, with progress as the shards
are read (it reads all the weights: hundreds of GB for DeepSeek)."""

from __future__ import annotations

import asyncio
import hashlib
import shlex
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..plan import ProcessPlan
from ..remote import RemoteError, Transport
from ..remote.scripts import shell_path
from ..render import in_place
from .report import Check

INDEX = "model.safetensors.index.json"


def weights_script(path: str) -> str:
    """sh printing `NAME SIZE` (or `NAME missing`) for every shard the safetensors index names (the
    single model.safetensors of a small model without one)."""
    return (
        f"cd {shell_path(path)} || exit 1\n"
        f"if [ -f {INDEX} ]; then shards=$(grep -o '\"[^\"]*\\.safetensors\"' {INDEX} | tr -d '\"' | sort -u)\n"
        "elif [ -f model.safetensors ]; then shards=model.safetensors\nelse exit 1; fi\n"
        'for s in $shards; do if [ -f "$s" ]; then stat -c \'%n %s\' "$s"; else echo "$s missing"; fi; done\n'
        "true\n"
    )


def parse_weights(text: str) -> tuple[dict[str, int], list[str]]:
    """(shard → bytes, missing shards) from weights_script's answer."""
    shards: dict[str, int] = {}
    missing: list[str] = []
    for line in text.splitlines():
        name, _, rest = line.rpartition(" ")
        if rest == "missing":
            missing.append(name)
        elif rest.isdigit():
            shards[name] = int(rest)
    return shards, missing


def weights_fingerprint(shards: Mapping[str, int]) -> str:
    """What nodes with the same weights agree on: shard count, bytes, a hash of every name and size."""
    listing = "\n".join(f"{name} {size}" for name, size in sorted(shards.items()))
    mark = hashlib.sha256(listing.encode()).hexdigest()[:12]
    return f"{len(shards)} shards, {sum(shards.values()) / 1e9:.1f} GB, sizes {mark}"


@dataclass(frozen=True)
class HashProgress:
    """Bytes of the weights hashed so far, over every node."""

    done: int
    total: int


async def _hash_node(
    server: ProcessPlan, transport: Transport, path: str, shards: Mapping[str, int], read: Callable[[int], None]
) -> dict[str, str] | str:
    """shard → sha256 on one node, read where the server reads it (its container); or why not."""
    names = " ".join(shlex.quote(name) for name in sorted(shards))
    script = f'cd {shell_path(path)} || exit 1\nfor s in {names}; do sha256sum "$s" || echo "- $s"; done\n'
    digests: dict[str, str] = {}
    try:
        stream = await transport.open_stream(in_place(server, script))
    except RemoteError as exc:
        return exc.what
    try:
        partial = b""
        while chunk := await stream.read():
            *lines, partial = (partial + chunk).split(b"\n")
            for line in lines:
                digest, _, name = line.decode("utf-8", "replace").partition("  ")
                if name in shards:
                    digests[name] = digest
                    read(shards[name])
    finally:
        await stream.close()
    return digests


async def hash_weights(
    servers: Mapping[str, ProcessPlan],
    transports: Mapping[str, Transport],
    path: str,
    shards: Mapping[str, Mapping[str, int]],
    progress: Callable[[HashProgress], None] = lambda _: None,
) -> list[Check]:
    """Every shard's sha256 on every node (`shards`: by node, those its size listing found) at
    once; a node whose shard differs from what most nodes have fails, naming the shards."""
    total = sum(sum(s.values()) for s in shards.values())
    done = 0

    def read(size: int) -> None:
        nonlocal done
        done += size
        progress(HashProgress(done, total))

    nodes = sorted(shards)
    found = await asyncio.gather(*(_hash_node(servers[n], transports[n], path, shards[n], read) for n in nodes))
    by_node = dict(zip(nodes, found, strict=True))
    usual = {
        shard: Counter(d[shard] for d in by_node.values() if isinstance(d, dict) and shard in d).most_common(1)[0][0]
        for shard in {s for d in by_node.values() if isinstance(d, dict) for s in d}
    }
    out = []
    for node, digests in by_node.items():
        if isinstance(digests, str):
            out.append(Check(node, "weights sha256", "FAIL", f"cannot hash the weights: {digests}"))
            continue
        unread = sorted(set(shards[node]) - set(digests))
        differ = sorted(s for s, d in digests.items() if d != usual[s])
        if unread or differ:
            said = [f"{len(differ)} shard(s) differ from the other nodes': {', '.join(differ[:3])}"] if differ else []
            said += [f"{len(unread)} shard(s) unreadable: {', '.join(unread[:3])}"] if unread else []
            hint = "copy the weights again from a node that agrees (rsync -a --checksum)"
            out.append(Check(node, "weights sha256", "FAIL", "; ".join(said), hint))
        else:
            gb = sum(shards[node].values()) / 1e9
            out.append(
                Check(node, "weights sha256", "PASS", f"{len(digests)} shards, {gb:.1f} GB read", same="the same bytes")
            )
    return out
