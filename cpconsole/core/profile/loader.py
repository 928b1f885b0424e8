"""Read a profile from YAML, keeping where every key stands so errors can say `file:line:col`."""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .schema import PATTERN_HELP, Profile

Severity = Literal["error", "warning", "info"]
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    """One problem found in a profile, already placed in its file."""

    severity: Severity
    path: Loc
    message: str
    file: str = "<profile>"
    line: int = 1
    column: int = 1

    @property
    def dotted(self) -> str:
        return dotted(self.path)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        tag = "" if self.severity == "error" else f"{self.severity}: "
        subject = f"{self.dotted}: " if self.path else ""
        return f"{where}: {tag}{subject}{self.message}"


class ProfileError(Exception):
    """The profile cannot be used; `findings` holds every error, placed in the file."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("\n".join(str(f) for f in findings))


def dotted(path: Loc) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True)
class SourceMap:
    """Where each path of the document starts (1-based line and column)."""

    file: str
    marks: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Loc) -> tuple[int, int]:
        """The mark of the path, or of its nearest ancestor present in the file."""
        for end in range(len(path), -1, -1):
            mark = self.marks.get(tuple(path[:end]))
            if mark is not None:
                return mark
        return (1, 1)

    def place(self, severity: Severity, path: Loc, message: str) -> Finding:
        line, column = self.locate(path)
        return Finding(severity, path, message, self.file, line, column)


@dataclass(frozen=True)
class LoadedProfile:
    profile: Profile
    source: SourceMap
    digest: str
    """sha256 of the validated profile's canonical JSON: equal for equal meaning, not equal text."""
    findings: tuple[Finding, ...] = ()
    """Warnings and notes from the rules (a profile with errors never loads)."""

    @property
    def path(self) -> str:
        return self.source.file


# ---------------------------------------------------------------- YAML with marks


def _walk(node: yaml.Node, path: Loc, marks: dict[Loc, tuple[int, int]], errors: list[Finding], file: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key == "<<":  # merge key: its entries are placed at the alias, good enough
                continue
            if key in seen:
                errors.append(
                    Finding(
                        "error",
                        (*path, key),
                        f"duplicate key (first at line {seen[key]}); YAML would silently keep the last one",
                        file,
                        line,
                        key_node.start_mark.column + 1,
                    )
                )
            seen[key] = line
            child = (*path, key)
            marks[child] = (line, key_node.start_mark.column + 1)
            _walk(value_node, child, marks, errors, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            marks[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk(item, child, marks, errors, file)


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """YAML text → plain data and a SourceMap. Raises ProfileError on syntax errors."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        if "'\\t'" in problem:
            problem += " (indent with spaces, not tabs)"
        raise ProfileError([Finding("error", (), f"YAML syntax: {problem}", file, line, col)]) from None
    except yaml.YAMLError as exc:
        raise ProfileError([Finding("error", (), f"YAML: {exc}", file)]) from None
    finally:
        loader.dispose()
    marks: dict[Loc, tuple[int, int]] = {(): (1, 1)}
    errors: list[Finding] = []
    if node is not None:
        _walk(node, (), marks, errors, file)
    if errors:
        raise ProfileError(errors)
    return data, SourceMap(file, marks)


# ---------------------------------------------------------------- pydantic errors → findings


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class whose fields live at `loc` in a Profile, for "did you mean" hints."""
    current: Any = Profile
    parts = list(loc)
    while parts:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            name = parts.pop(0)
            info = current.model_fields.get(str(name))
            if info is None:
                return None
            current = info.annotation
        elif typing.get_origin(current) in (dict, tuple, list):
            parts.pop(0)
            args = typing.get_args(current)
            current = args[-1] if typing.get_origin(current) is dict else args[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and `X | None` down to the one interesting type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            arms = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(arms) != 1:
                return tp
            tp = arms[0]
        else:
            return tp


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _finding_from_pydantic(error: ErrorDetails, source: SourceMap) -> Finding:
    loc: Loc = tuple(p for p in error["loc"] if p != "[key]")
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
        return source.place("error", loc, f"unknown key '{key}' ({hint})")
    if kind == "missing":
        return source.place("error", loc[:-1], f"missing required key '{loc[-1]}'")
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern", "")
        what = "name" if "[key]" in error["loc"] else "value"
        message = f"invalid {what} {_describe(error['input'])}: {PATTERN_HELP.get(pattern, message)}"
    elif kind != "value_error":
        message = f"{message} (got {_describe(error['input'])})"
    return source.place("error", loc, message)


# ---------------------------------------------------------------- public entry points


def profile_digest(profile: Profile) -> str:
    canonical = json.dumps(profile.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_text(text: str, file: str = "<profile>") -> LoadedProfile:
    """Parse and schema-validate a profile. Raises ProfileError; semantic rules are separate."""
    data, source = parse_yaml(text, file)
    return load_data(data, source)


def load_data(data: Any, source: SourceMap) -> LoadedProfile:
    """Schema-validate already-parsed profile data (YAML's, or built by a program)."""
    file = source.file
    if data is None:
        raise ProfileError([Finding("error", (), "the profile is empty", file)])
    if not isinstance(data, dict):
        raise ProfileError([Finding("error", (), "a profile is a YAML mapping (name:, model:, nodes:, ...)", file)])
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        findings = [_finding_from_pydantic(e, source) for e in exc.errors()]
        findings.sort(key=lambda f: (f.line, f.column))
        raise ProfileError(findings) from None
    return LoadedProfile(profile, source, profile_digest(profile))


def load_file(path: str | Path) -> LoadedProfile:
    """Read, parse and schema-validate a profile file."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ProfileError([Finding("error", (), f"cannot read the profile: {reason}", name)]) from None
    return load_text(text, name)
