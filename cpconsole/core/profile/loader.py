"""Read a profile from YAML, keeping where every key stands so errors can say `file:line:col`."""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..names import did_you_mean
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


MAX_PROFILE_BYTES = 1 << 20  # a profile is a few KB; anything this big is not one
MAX_NODES = 100_000  # YAML values after expanding aliases: a guide's profile has a few hundred


def _refusal(file: str, mark: yaml.Mark | None, message: str) -> ProfileError:
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return ProfileError([Finding("error", (), message, file, line, column)])


_CLOSERS = {"{": "}", "[": "]", '"': '"', "'": "'"}


def _unclosed(text: str, file: str, exc: yaml.MarkedYAMLError) -> list[Finding]:
    """Where the mistake most likely is: a bracket or quote opened on an earlier line than the one
    the parser gave up on (it reads on until something cannot belong inside)."""
    opened, gave_up = exc.context_mark, exc.problem_mark
    if opened is None or gave_up is None or opened.line == gave_up.line or opened.index >= len(text):
        return []
    char = text[opened.index]
    if char not in _CLOSERS:
        return []
    why = (
        f"this {char} is never closed (the parser gave up at line {gave_up.line + 1}): add the missing {_CLOSERS[char]}"
    )
    return [Finding("error", (), why, file, opened.line + 1, opened.column + 1)]


def _expanded_size(root: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases expand it past MAX_NODES, or refer to themselves, before
    anything expands it (a 500-byte "billion laughs" would take gigabytes)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else (list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        )
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_NODES:
                why = f"YAML aliases expand this value to more than {MAX_NODES:,} values; write it out or use fewer"
                raise _refusal(file, node.start_mark, why)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _refusal(file, node.start_mark, "a YAML alias refers to the value that contains it")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _check_values(data: Any, source: SourceMap) -> None:
    """Values no YAML type check catches: NUL in strings, infinite or NaN numbers."""
    findings: list[Finding] = []
    stack: list[tuple[Loc, Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(((*path, str(k)), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, i), v) for i, v in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            findings.append(source.place("error", path, "contains a NUL character; remove it"))
        elif isinstance(value, float) and not math.isfinite(value):
            findings.append(source.place("error", path, f"{value} is not a finite number; write a number"))
    if findings:
        raise ProfileError(sorted(findings, key=lambda f: (f.line, f.column)))


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """YAML text → plain data and a SourceMap. Raises ProfileError on syntax errors and on
    documents too large, too deep or expanding too far to be a profile."""
    if len(text) > MAX_PROFILE_BYTES:
        raise _refusal(
            file, None, f"{len(text):,} characters is too large for a profile (at most {MAX_PROFILE_BYTES:,})"
        )
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character such as NUL, anywhere in the text
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - before.rfind("\n")
        why = f"character U+{int(exc.character):04X} is not allowed in YAML; remove it"
        raise ProfileError([Finding("error", (), why, file, line, column)]) from None
    try:
        node = loader.get_single_node()
        if node is not None:
            _expanded_size(node, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        if "'\\t'" in problem:
            problem += " (indent with spaces, not tabs)"
        refusal = _refusal(file, exc.problem_mark or exc.context_mark, f"YAML syntax: {problem}")
        raise ProfileError([*_unclosed(text, file, exc), *refusal.findings]) from None
    except yaml.YAMLError as exc:
        raise _refusal(file, None, f"YAML: {exc}") from None
    except RecursionError:
        raise _refusal(file, None, "YAML nested too deeply to be a profile") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise _refusal(file, loader.get_mark(), f"YAML value: {exc}") from None
    finally:
        loader.dispose()
    marks: dict[Loc, tuple[int, int]] = {(): (1, 1)}
    errors: list[Finding] = []
    if node is not None:
        _walk(node, (), marks, errors, file)
    if errors:
        raise ProfileError(errors)
    source = SourceMap(file, marks)
    _check_values(data, source)
    return data, source


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
        return source.place("error", loc, f"unknown key '{key}' ({did_you_mean(key, allowed, 'allowed keys')})")
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


def read_profile_text(path: str | Path) -> str:
    """A profile file's text: a regular file (a FIFO or device would hang or never end) of at
    most MAX_PROFILE_BYTES, in UTF-8. Raises ProfileError."""
    name = str(path)

    def refuse(reason: str) -> ProfileError:
        return ProfileError([Finding("error", (), f"cannot read the profile: {reason}", name)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    except OSError as exc:
        raise refuse(exc.strerror or str(exc)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refuse("not a regular file")
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_PROFILE_BYTES + 1)
    if len(data) > MAX_PROFILE_BYTES:
        raise refuse(f"larger than {MAX_PROFILE_BYTES:,} bytes: not a profile")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_file(path: str | Path) -> LoadedProfile:
    """Read, parse and schema-validate a profile file."""
    return load_text(read_profile_text(path), str(path))
