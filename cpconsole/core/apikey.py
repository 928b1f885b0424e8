"""The API key the servers run with, read on the jump host where the profile says it is kept."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .names import UsageError
from .profile.schema import ApiKey


def read_api_key(source: ApiKey | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The key (None when the profile has none). UsageError says what is missing and where."""
    if source is None:
        return None
    if source.env is not None:
        where = f"${source.env}"
        value = environ.get(source.env, "")
    else:
        path = Path(source.file or "").expanduser()
        where = str(path)
        try:
            value = _read_private(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"api_key: cannot read {where}: {getattr(exc, 'strerror', None) or exc}") from None
    value = value.strip()
    if not value:
        raise UsageError(f"api_key: {where} is empty or not set on this host; the servers need the key")
    if not value.isprintable() or " " in value:
        raise UsageError(f"api_key: {where} holds spaces or control characters; a bearer token cannot")
    return value


def _read_private(path: Path, limit: int = 4096) -> str:
    """The first line of a key file that only its owner may read, as ssh insists for private keys:
    a key others can read is no secret any more, so it is refused before it is used."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not hang the verb
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"api_key: {path} is not a regular file")
        if info.st_mode & 0o077:
            raise UsageError(
                f"api_key: {path} can be read or written by others (mode {stat.S_IMODE(info.st_mode):o}); "
                f"`chmod 600 {path}` and use a new key, as this one may be known"
            )
        data = os.read(fd, limit)
    finally:
        os.close(fd)
    return next(iter(data.decode("utf-8").splitlines()), "")
