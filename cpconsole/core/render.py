"""A launch plan as text: each process's launch script (POSIX sh), its JSON, the `docker run` of
the containers the profile makes."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

from .plan import LaunchPlan, ProcessPlan


def format_command(argv: tuple[str, ...] | list[str]) -> str:
    """One shell word per argument, every one quoted as needed; each --flag starts a new line."""
    lines: list[list[str]] = [[]]
    for index, word in enumerate(argv):
        if word.startswith("--") and index > 0 and lines[-1]:
            lines.append([])
        lines[-1].append(shlex.quote(word))
    return " \\\n    ".join(" ".join(words) for words in lines)


def docker_exec_words(
    proc: ProcessPlan, *, more_env: Sequence[tuple[str, str]] = (), key_env: str | None = None
) -> list[str]:
    """`docker exec` into the process's container with its working directory and environment
    (and `more_env`): shell words, each quoted, up to and including the container's name. The API
    key goes in as `key_env` (default: the process's own variable for it). A process with setup
    lines gets its own environment after them instead (`prepared`)."""
    if not proc.container:
        raise ValueError(f"{proc.name} runs in no container")
    words = [f"{shlex.join(proc.container_cli)} exec"]
    if proc.cwd:
        words.append(f"--workdir {shlex.quote(proc.cwd)}")
    given = (*(() if proc.setup else proc.env), *more_env)
    words += [f"--env {shlex.quote(f'{key}={value}')}" for key, value in given]
    if key_env or proc.key_env:  # its value from the calling shell's environment, never written
        words.append(f"--env {key_env or proc.key_env}")
    if proc.admin_env:
        words.append(f"--env {proc.admin_env}")
    return [*words, shlex.quote(proc.container)]


def _exports(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [f"export {key}={shlex.quote(value)}" for key, value in pairs]


def prepared(proc: ProcessPlan, script: str) -> tuple[str, str]:
    """The shell that runs `script` where the process runs, and what it runs. With setup lines:
    bash (the guide's shell) running them, then exporting the process's environment — the
    profile's values win over what the lines set, as the guide's exports over its shell's — then
    `script`. Without: sh and `script` (the environment comes from docker exec or the caller)."""
    if not proc.setup:
        return "sh", script
    return "bash", "\n".join([*proc.setup, *_exports(proc.env), script])


def in_place(
    proc: ProcessPlan, script: str, *, more_env: Sequence[tuple[str, str]] = (), key_env: str | None = None
) -> str:
    """sh running `script` where the process runs and as it starts: in its container (`docker
    exec`) or on the node, with its setup lines, its environment and `more_env` (the API key, on
    the node, is the shell's own)."""
    shell, body = prepared(proc, script)
    if proc.container:
        words = docker_exec_words(proc, more_env=more_env, key_env=key_env)
        return f"{' '.join(words)} {shell} -c {shlex.quote(body)}"
    exports = "".join(line + "\n" for line in _exports((*(() if proc.setup else proc.env), *more_env)))
    return exports + (f"{shell} -c {shlex.quote(body)}" if proc.setup else script)


# docker exec passes no signal on to what it started, so in the container the process starts a
# session of its own and writes its group id to a file: stopping it signals that group in there
KEEP_GROUP = 'echo $$ > "$0" && exec "$@"'


# the API key, written by cpconsole (mode 600) just before the start, read once and deleted
KEY_FILE = ".api_key"
# the proxy's admin token, made by its launch script at its first start (mode 600 under the spawn's
# umask); kept, since a console reads it to drain an instance
ADMIN_FILE = ".admin_token"


def render_script(proc: ProcessPlan, *, shown_key: str | None = None) -> str:
    """A POSIX sh script that starts the process in the foreground (`exec`), env and all. The API
    key is read from KEY_FILE; `shown_key` writes it in instead (`render --show-secrets`, for a
    script to run by hand — never what is sent to a node)."""
    head = ["#!/bin/sh", f"# cpconsole: {proc.name} ({proc.role}) on node {proc.node}"]
    if proc.key_env and shown_key is not None:
        head.append(f"export {proc.key_env}={shlex.quote(shown_key)}")
    elif proc.key_env:  # run in its run directory, where KEY_FILE is
        head.append(f"{proc.key_env}=$(cat {KEY_FILE}) && rm -f {KEY_FILE} && export {proc.key_env} || exit 1")
    if proc.admin_env:  # made here once (umask 077: only its user reads it), kept for a console to read
        head.append(f"[ -s {ADMIN_FILE} ] || od -An -tx1 -N24 /dev/urandom | tr -d ' \\n' > {ADMIN_FILE} || exit 1")
        head.append(f"{proc.admin_env}=$(cat {ADMIN_FILE}) && export {proc.admin_env} || exit 1")
    if proc.container:
        shell, keep_group = prepared(proc, KEEP_GROUP)
        setsid = f"setsid -w {shell} -c {shlex.quote(keep_group)} {shlex.quote(proc.container_pidfile or '')}"
        options = [*docker_exec_words(proc), setsid, format_command(proc.argv)]
        return "\n".join([*head, "exec " + " \\\n    ".join(options)]) + "\n"
    body = [f"cd {shlex.quote(proc.cwd)} || exit 1"] if proc.cwd else []
    if proc.setup:  # bash runs the lines, then becomes the process (one pid throughout)
        shell, become = prepared(proc, 'exec "$@"')
        start = f"exec {shell} -c {shlex.quote(become)} {shell} " + format_command(proc.argv)
    else:
        body += _exports(proc.env)
        start = "exec " + format_command(proc.argv)
    return "\n".join([*head, *body, start]) + "\n"


def plan_json(plan: LaunchPlan, names: list[str] | None = None) -> str:
    chosen = [plan.process(n) for n in names] if names else list(plan.processes)
    return json.dumps([p.as_json() for p in chosen], indent=2, ensure_ascii=False)


def render_containers(plan: LaunchPlan) -> str:
    """The `docker run` of every container the profile creates; a note for the hand-made ones."""
    parts = []
    for c in plan.containers:
        head = f"# ---- container {c.name} on {c.node} → {plan.node(c.node).host}\n"
        if c.image is None:
            parts.append(head + "# made by hand (no image in the profile): checked by preflight, not created\n")
        else:
            argv = c.run_argv()  # the image and its command on a line of their own
            parts.append(head + format_command(argv[:-3]) + " \\\n    " + shlex.join(argv[-3:]) + "\n")
    return "\n".join(parts) if parts else "# the profile runs nothing in a container\n"
