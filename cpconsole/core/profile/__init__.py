"""Profiles: the YAML description of a deployment, validated before anything runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .loader import Finding, LoadedProfile, ProfileError, SourceMap, load_data, load_file, load_text
from .rules import check
from .schema import Profile

__all__ = [
    "Finding",
    "LoadedProfile",
    "Profile",
    "ProfileError",
    "load_profile",
    "load_profile_data",
    "load_profile_text",
]


def _checked(loaded: LoadedProfile) -> LoadedProfile:
    findings = [loaded.source.place(severity, path, message) for severity, path, message in check(loaded.profile)]
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise ProfileError(errors)
    return dataclasses.replace(loaded, findings=tuple(findings))


def load_profile(path: str | Path) -> LoadedProfile:
    """Load a profile file and apply every rule. Raises ProfileError with `file:line:col` findings."""
    return _checked(load_file(path))


def load_profile_text(text: str, file: str = "<profile>") -> LoadedProfile:
    return _checked(load_text(text, file))


def load_profile_data(data: dict[str, Any], file: str = "<data>") -> LoadedProfile:
    """A profile built by a program rather than read from YAML (errors point at line 1)."""
    return _checked(load_data(data, SourceMap(file)))
