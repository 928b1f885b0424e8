"""Loopback addresses of this test run, so that two runs side by side never meet.

A run claims one /16 of 127.0.0.0/8 (127.R.0.0) by holding an flock on a file named after it for
its whole life; each test that starts servers takes the next /24 of it (127.R.k.0) and puts its
"nodes" at .11, .12 and .13 of that /24, as the demo does in 127.0.0.0/24. Every server the tests
start binds its node's own address, so ports are unique by address: the demo's port numbers
stay, the addresses do not."""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CLAIMS = Path(tempfile.gettempdir()) / "cpconsole-test-loopback"
DEMO_PREFIX = "127.0.0"  # the demo profile's nodes: 127.0.0.11–13
_claims: list[IO[str]] = []  # held open: the locks last as long as this process
_prefixes: Iterator[str] = iter(())


def _claim_octet() -> int:
    """A second octet no other run holds, at random, locked until this process ends."""
    CLAIMS.mkdir(mode=0o1777, exist_ok=True)
    candidates = list(range(20, 250))
    random.shuffle(candidates)
    for octet in candidates:
        handle = (CLAIMS / f"127.{octet}").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _claims.append(handle)
        return octet
    raise RuntimeError(f"every loopback /16 under {CLAIMS} is claimed by another test run")


def _next_prefix() -> str:
    global _prefixes
    for prefix in _prefixes:
        return prefix
    octet = _claim_octet()  # this /16 is used up (or none claimed yet): claim another
    _prefixes = iter([f"127.{octet}.{k}" for k in range(1, 256)])
    return next(_prefixes)


@dataclass(frozen=True)
class Block:
    """One test's loopback /24: its three nodes, plus spare addresses for "another host"."""

    prefix: str  # "127.R.k"

    @classmethod
    def fresh(cls) -> Block:
        return cls(_next_prefix())

    def ip(self, last: int) -> str:
        return f"{self.prefix}.{last}"

    @property
    def nodes(self) -> list[str]:
        """The demo's three nodes in this block: prefill-a, prefill-b, decode-a."""
        return [self.ip(11), self.ip(12), self.ip(13)]

    def relocate(self, text: str) -> str:
        """Text written for the demo's addresses (127.0.0.x), moved into this block."""
        return text.replace(f"{DEMO_PREFIX}.", f"{self.prefix}.")
