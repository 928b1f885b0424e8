"""Multi-node start-up like torch.distributed: node-rank 0 listens on the master port and waits
for every other rank; a rank that loses its peers dies, as a real one does."""

from __future__ import annotations

import asyncio
import time

from .vlog import VllmLog


class Rendezvous:
    def __init__(self, log: VllmLog) -> None:
        self.log = log
        self.lost = asyncio.Event()
        self.reason = ""
        self._server: asyncio.Server | None = None
        self._watch: asyncio.Task[None] | None = None
        self._link: asyncio.StreamWriter | None = None  # held: a dropped writer closes the link

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()

    async def host(self, address: str, port: int, peers: int) -> None:
        """Listen and return once `peers` other ranks have joined."""
        joined: dict[int, str] = {}
        everyone = asyncio.Event()

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = await reader.readline()
            if not line.startswith(b"JOIN "):
                writer.close()
                return
            rank = int(line.split()[1])
            joined[rank] = writer.get_extra_info("peername")[0]
            writer.write(b"OK\n")
            await writer.drain()
            if len(joined) >= peers:
                everyone.set()
            await reader.read()  # EOF: the rank is gone
            self._lose(f"rank {rank} on {joined[rank]} disconnected from the TCPStore at {address}:{port}")

        self._server = await asyncio.start_server(peer, address, port, reuse_address=True)
        await everyone.wait()

    async def join(self, address: str, port: int, rank: int, timeout: float) -> None:
        """Connect to the master, retrying like torch's TCPStore client until `timeout`."""
        deadline = time.monotonic() + timeout
        last_warning = 0.0
        while True:
            try:
                reader, writer = await asyncio.open_connection(address, port)
                break
            except OSError as exc:
                now = time.monotonic()
                if now > deadline:
                    raise TimeoutError(
                        f"The client socket has timed out after {timeout:.0f}s while trying to connect to "
                        f"({address}, {port})."
                    ) from None
                if now - last_warning > 5:
                    self.log.write(
                        f"[W socket.cpp:767] [c10d] The client socket has failed to connect to [{address}]:{port} "
                        f"(errno: {exc.errno} - {exc.strerror}).\n"
                    )
                    last_warning = now
                await asyncio.sleep(0.2)
        writer.write(f"JOIN {rank}\n".encode())
        await writer.drain()
        await reader.readline()
        self._link = writer

        async def watch() -> None:
            await reader.read()
            self._lose(f"Connection reset by peer: the master {address}:{port} is gone")

        self._watch = asyncio.create_task(watch())
