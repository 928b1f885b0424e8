"""The API key the servers run with, read on the jump host where the profile says it is kept."""

from __future__ import annotations

import os
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
            value = next(iter(path.read_text().splitlines()), "")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"api_key: cannot read {where}: {getattr(exc, 'strerror', None) or exc}") from None
    value = value.strip()
    if not value:
        raise UsageError(f"api_key: {where} is empty or not set on this host; the servers need the key")
    if not value.isprintable() or " " in value:
        raise UsageError(f"api_key: {where} holds spaces or control characters; a bearer token cannot")
    return value
