"""The console's `:` command line: text → a typed intent, checked against the plan.

`:up`, `:down`, `:restart decode`, `:logs prefill-0`, `:exec all npu-smi info`, `:details proxy`,
a screen name (`:npus`), `:help`, `:quit`. Parsing is kept apart from Textual so the UI only carries
intents out and the parser is tested on its own; an unknown word or target is a `CommandError`
saying what would do.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .names import did_you_mean
from .plan import LaunchPlan

# the console's screens: the `:` word that opens each, and what it shows (the UI adds keys and classes)
SCREENS = {
    "board": "processes, nodes and alerts at a glance",
    "logs": "the logs of every process, merged",
    "npus": "every node's NPU chips",
    "metrics": "vLLM's figures of every API server",
    "plan": "exactly what runs: scripts, env, warnings",
    "prompt": "ask a server, probe every hop, needle test, bench",
    "preflight": "check every node before launch",
    "alerts": "every alert of this session",
    "ranks": "every rank: node, chip, TP/PCP rank, DCP group, kv port, NPU IP, state",
    "journal": "who did what to the deployment, from where, how it ended",
    "sweep": "TTFT against prompt length: the newest sweep, earlier ones, the guide's figure",
    "accuracy": "answers to a public dataset scored: the newest check, earlier ones, the guide's figure",
}


class CommandError(ValueError):
    pass


@dataclass(frozen=True)
class Up:
    pass


@dataclass(frozen=True)
class Down:
    pass


@dataclass(frozen=True)
class Restart:
    target: str  # a process or an instance name


@dataclass(frozen=True)
class ShowLogs:
    process: str | None  # None: every process, merged


@dataclass(frozen=True)
class ShowDetails:
    process: str


@dataclass(frozen=True)
class ShowScreen:
    name: str


@dataclass(frozen=True)
class Exec:
    nodes: tuple[str, ...]
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Quit:
    pass


Command = Up | Down | Restart | ShowLogs | ShowDetails | ShowScreen | Exec | Help | Quit

# every verb with its usage, for help and completion
USAGE = {
    "up": ":up                      start what is not running: instances side by side, then the proxy",
    "down": ":down                    stop every process, proxy first",
    "restart": ":restart TARGET          restart an instance (or a process's instance)",
    "logs": ":logs [PROCESS]          logs of one process, or all merged",
    "details": ":details PROCESS         plan, state and last lines of one process",
    "exec": ":exec NODE|all ARGV...   run a command on nodes, show the output",
    "help": ":help                    keys and commands",
    "quit": ":quit                    leave (asks what to do with running processes)",
    **{name: f":{name:<23} {what}" for name, what in SCREENS.items() if name != "logs"},
}
MUTATING = (Up, Down, Restart, Exec)


def _suggest(word: str, choices: list[str]) -> str:
    hint = did_you_mean(word, choices, "one of")
    return f" — {hint}" if hint.startswith("did") else f" ({hint})"


def parse_command(text: str, plan: LaunchPlan) -> Command:
    try:
        words = shlex.split(text.strip().removeprefix(":"))
    except ValueError as exc:
        raise CommandError(f"cannot split {text!r}: {exc}") from None
    if not words:
        raise CommandError("empty command; :help lists them")
    verb, args = words[0].lower(), words[1:]
    processes = [p.name for p in plan.processes]
    instances = sorted({p.instance for p in plan.processes if p.instance})

    def no_args() -> None:
        if args:
            raise CommandError(f":{verb} takes no arguments")

    def one_process() -> str:
        if len(args) != 1:
            raise CommandError(f"usage: {USAGE[verb].split('  ')[0]}")
        if args[0] not in processes:
            raise CommandError(f"no process {args[0]!r}" + _suggest(args[0], processes))
        return args[0]

    match verb:
        case "up":
            no_args()
            return Up()
        case "down":
            no_args()
            return Down()
        case "help" | "?":
            return Help()
        case "quit" | "q":
            no_args()
            return Quit()
        case "restart":
            if len(args) != 1:
                raise CommandError("usage: :restart TARGET (an instance or a process)")
            if args[0] not in processes + instances:
                raise CommandError(f"nothing called {args[0]!r}" + _suggest(args[0], instances + processes))
            return Restart(args[0])
        case "logs":
            return ShowLogs(one_process() if args else None)
        case "details":
            return ShowDetails(one_process())
        case "exec":
            if len(args) < 2:
                raise CommandError("usage: :exec NODE|all ARGV...")
            nodes = [n.name for n in plan.nodes]
            target = args[0].split(",")
            if target == ["all"]:
                target = nodes
            for node in target:
                if node not in nodes:
                    raise CommandError(f"no node {node!r}" + _suggest(node, nodes))
            return Exec(tuple(target), tuple(args[1:]))
        case _ if verb in SCREENS:
            no_args()
            return ShowScreen(verb)
        case _:
            raise CommandError(f"unknown command {verb!r}" + _suggest(verb, list(USAGE)))


def completions(prefix: str, plan: LaunchPlan) -> list[str]:
    """Whole command lines that start with what was typed, for the command line's suggester."""
    text = prefix.removeprefix(":")
    candidates = list(USAGE)
    candidates += [f"logs {p.name}" for p in plan.processes]
    candidates += [f"details {p.name}" for p in plan.processes]
    candidates += [f"restart {i}" for i in sorted({p.instance for p in plan.processes if p.instance})]
    candidates += [f"exec {n}" for n in ["all", *(n.name for n in plan.nodes)]]
    return [c for c in candidates if c.startswith(text)]
