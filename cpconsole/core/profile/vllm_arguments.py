"""`vllm_args` against vLLM's own `vllm serve` arguments: a key vLLM does not know is an error at its
line (with the nearest real one), a value of the wrong type or outside the choices too — found at
validation, not minutes into loading. The arguments of each release are data read from its parser
(vllm_args/<version>.json, written by scripts/vllm_args.py), not typed by hand."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pydantic import JsonValue

from .hits import Hit
from .schema import Profile, flag_name
from .versions import version_key

DATA = Path(__file__).with_name("vllm_args")


@dataclass(frozen=True)
class Argument:
    kind: str  # flag, int, float, str, json
    choices: tuple[str, ...] = ()
    many: bool = False  # nargs: a list is fine


@dataclass(frozen=True)
class ArgumentSet:
    vllm: str
    by_flag: Mapping[str, Argument]  # every spelling, as a vllm_args key would be (dashes → _)


def _read(path: Path) -> ArgumentSet:
    data = json.loads(path.read_text())
    by_flag: dict[str, Argument] = {}
    for spec in data["args"].values():
        arg = Argument(spec["kind"], tuple(spec.get("choices", ())), "nargs" in spec)
        for flag in spec["flags"]:
            if flag.startswith("--"):
                by_flag[flag_name(flag[2:])] = arg
    return ArgumentSet(str(data["vllm"]), by_flag)


@cache
def known_sets() -> tuple[ArgumentSet, ...]:
    """Every release there is data for, oldest first."""
    found = [_read(path) for path in DATA.glob("*.json")]
    return tuple(sorted(found, key=lambda s: version_key(s.vllm) or ()))


def released(version: str) -> ArgumentSet | None:
    """The data of exactly this release, if cpconsole has it."""
    key = version_key(version)
    return next((s for s in known_sets() if key is not None and version_key(s.vllm) == key), None)


def for_version(declared: str | None) -> ArgumentSet | None:
    """The data of the newest release not newer than `declared` (the oldest when it is older than
    all; the newest when the profile declares none or one cpconsole cannot read)."""
    sets = known_sets()
    if not sets:
        return None
    wanted = version_key(declared) if declared else None
    if wanted is None:
        return sets[-1]
    fitting = [s for s in sets if (version_key(s.vllm) or ()) <= wanted]
    return fitting[-1] if fitting else sets[0]


def _wrong_value(arg: Argument, value: JsonValue) -> str | None:
    """Why vLLM would refuse this value, or None."""
    values = value if arg.many and isinstance(value, list) else [value]
    for one in values:
        if arg.kind == "flag" and not isinstance(one, bool):
            return "takes true or false"
        if arg.kind == "int" and (isinstance(one, bool) or not isinstance(one, int)):
            return "takes an integer"
        if arg.kind == "float" and (isinstance(one, bool) or not isinstance(one, int | float)):
            return "takes a number"
        if arg.kind == "json" and not isinstance(one, dict | list | str):
            return "takes a JSON object"
        if arg.kind == "str" and isinstance(one, dict | list):
            return "takes a single value"
        if arg.choices and str(one) not in arg.choices and one is not None:
            return f"takes one of {', '.join(arg.choices)}"
    return None


def problems(args: Mapping[str, JsonValue], known: ArgumentSet) -> Iterator[tuple[str, str]]:
    """(key, why) for each vllm_args entry vLLM would refuse."""
    said = f"vLLM {known.vllm}'s `vllm serve`"
    for key, value in args.items():
        arg = known.by_flag.get(flag_name(key))
        if arg is None:
            underscores = "_" in key  # suggest in the profile's own spelling
            names = sorted(flag.replace("-", "_") if underscores else flag for flag in known.by_flag)
            typed = flag_name(key).replace("-", "_") if underscores else flag_name(key)
            close = difflib.get_close_matches(typed, names, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else "`vllm serve --help=all` lists them"
            yield key, f"{said} has no argument --{flag_name(key)}; {hint}"
            continue
        wrong = _wrong_value(arg, value)
        if wrong:
            yield key, f"--{flag_name(key)} {wrong} in {said}, not {json.dumps(value)}"


def vllm_arguments(profile: Profile) -> Iterator[Hit]:
    """vllm_args against the data of the declared release; of another release (cpconsole has none
    of that one), what it refuses is a warning — the flag may be new — and the gap is said."""
    declared = profile.versions.vllm
    known = for_version(declared)
    if known is None:
        return
    exact = declared is None or released(declared) is not None
    if not exact:
        have = ", ".join(s.vllm for s in known_sets())
        yield (
            "warning",
            ("versions", "vllm"),
            f"cpconsole has no argument data of vLLM {declared} (it has {have}): vllm_args are checked against "
            f"{known.vllm}'s; `cpconsole preflight` checks them against the installed vLLM's own --help",
        )
    for name, inst in profile.instances.items():
        for key, why in problems(inst.vllm_args, known):
            yield "error" if exact else "warning", ("instances", name, "vllm_args", key), why


_OPTION = re.compile(r"^  (-[^ ].*?)(?:\s{2,}|$)")


def from_help(text: str, vllm: str) -> ArgumentSet:
    """The arguments `vllm serve --help=all` lists (a node's own install): every spelling, whether it
    takes a value, its choices; its types are not in the text, so values are checked as text."""
    by_flag: dict[str, Argument] = {}
    for line in text.splitlines():
        match = _OPTION.match(line)
        if not match:
            continue
        spellings = [part.split() for part in match.group(1).split(", ")]
        takes = [words[1:] for words in spellings if len(words) > 1]
        choices = takes[0][0].strip("{}").split(",") if takes and takes[0][0].startswith("{") else []
        arg = Argument("str" if takes else "flag", tuple(sorted(choices)), any("..." in " ".join(t) for t in takes))
        for words in spellings:
            if words[0].startswith("--") and words[0] != "--help":
                by_flag[flag_name(words[0][2:])] = arg
    return ArgumentSet(vllm, by_flag)
