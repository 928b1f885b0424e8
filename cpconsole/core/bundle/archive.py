"""A bundle's files, held until written as one .tar.gz with a deterministic layout: entries in
name order under one top directory, every one with the bundle's own time, owner 0, mode 0644,
and a gzip header without a time — the same pieces give the same bytes. A size cap keeps the
archive bounded: a piece past it is cut to its end (where a failure is) and the cut is said."""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from .redact import Redactor

MAX_BYTES = 64 << 20  # default size cap of the pieces together (before compression)
WORTH = ("SUMMARY.md", "profile.yaml", "processes/", "alerts.json", "journal.jsonl", "metrics", "nodes/")


def _worth(name: str) -> int:
    rank = next((i for i, start in enumerate(WORTH) if name.startswith(start)), len(WORTH))
    return rank + (len(WORTH) if "/plog/" in name else 0)  # plogs last: the most and the least read


@dataclass
class Archive:
    top: str  # the directory every entry is under
    redactor: Redactor
    mtime: int  # the bundle's time, on every entry
    max_bytes: int = MAX_BYTES
    files: dict[str, bytes] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # pieces that could not be had, and why
    cut: list[str] = field(default_factory=list)  # pieces cut to fit the cap

    def add(self, name: str, text: str | bytes) -> None:
        data = text.encode("utf-8", "replace") if isinstance(text, str) else text
        self.files[name] = self.redactor.text(data.decode("utf-8", "replace")).encode()

    def lack(self, what: str, why: str) -> None:
        self.missing.append(f"{what}: {self.redactor.text(why)}")

    def fit(self) -> None:
        """Past the cap, pieces are cut to their end (where a failure is), taken in order of
        worth: the profile and scripts, process logs, node facts, plogs; so the same pieces give
        the same cuts whatever order the nodes answered in."""
        room = self.max_bytes
        for name in sorted(self.files, key=lambda n: (_worth(n), n)):
            data = self.files[name]
            if len(data) > room:
                self.cut.append(f"{name}: its last {room} of {len(data)} bytes (size cap {self.max_bytes >> 20} MiB)")
                self.files[name] = data[len(data) - room :] if room else b""
            room -= len(self.files[name])

    def write(self, path: Path) -> None:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self.files):
                data = self.files[name]
                info = tarfile.TarInfo(f"{self.top}/{name}")
                info.size, info.mtime, info.mode = len(data), self.mtime, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
        tmp = path.with_name(path.name + ".part")
        with tmp.open("wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as packed:
            packed.write(raw.getvalue())
        tmp.replace(path)
