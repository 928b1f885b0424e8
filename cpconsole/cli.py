"""`cpconsole` command line: argument parsing and wiring, nothing more.

Exit codes: see exit_codes. The verbs that touch nodes import what they need when they run, so
that validate, render, plan, schema and --help start at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .core.names import METRICS_TOKEN_ENV, UsageError, did_you_mean
from .core.safetext import SafeStream

if TYPE_CHECKING:  # at run time each verb imports what it needs: --help imports none of it
    from .core.plan import LaunchPlan
    from .core.profile import LoadedProfile
    from .results import Format
from .exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .ui.keys import console_keys_hint, keys_now


def _print_findings(loaded: LoadedProfile) -> None:
    for finding in loaded.findings:
        print(finding, file=sys.stderr)


def _plan_for(args: argparse.Namespace) -> tuple[LoadedProfile, LaunchPlan]:
    """The profile's plan; for a plan with SSH nodes, a loud line per node whose host key is not
    verified (by the profile or ssh_config), on every verb that uses it."""
    from .core.hostkeys import unverified_nodes
    from .core.plan import build_plan
    from .core.profile import load_profile

    loaded = load_profile(args.profile)
    plan = build_plan(loaded)
    for line in unverified_nodes(plan.nodes):
        print(f"cpconsole: WARNING: {line}", file=sys.stderr)
    return loaded, plan


def cmd_validate(args: argparse.Namespace) -> int:
    from .core.profile import load_profile

    loaded = load_profile(args.profile)
    _print_findings(loaded)
    warnings = sum(f.severity == "warning" for f in loaded.findings)
    print(f"{loaded.path}: valid ({warnings} warning{'s' if warnings != 1 else ''})")
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from .core.apikey import read_api_key
    from .core.render import plan_json, render_containers, render_script

    _, plan = _plan_for(args)
    key = read_api_key(plan.api_key) if args.show_secrets else None
    names: list[str] = args.process or []
    chosen = [plan.process(n) for n in names] if names else list(plan.processes)
    if args.format == "json":
        print(plan_json(plan, names))
        return EXIT_OK
    if args.containers:
        print(render_containers(plan), end="")
        return EXIT_OK
    for index, proc in enumerate(chosen):
        if index:
            print()
        print(f"# ---- {proc.name} → {proc.host}")
        print(render_script(proc, shown_key=key), end="")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from .core.profile import Profile

    print(json.dumps(Profile.model_json_schema(), indent=2))
    return EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    loaded, plan = _plan_for(args)
    _print_findings(loaded)
    print(f"{plan.profile}  ({len(plan.nodes)} nodes, {len(plan.processes)} processes)")
    for proc in plan.processes:
        http = f":{proc.http_port}" if proc.http_port else " headless"
        print(f"  {proc.name:<12} {proc.role:<9} {proc.node:<12} {proc.address}{http}")
    print("render the commands with: cpconsole render", loaded.path)
    return EXIT_OK


def cmd_console(args: argparse.Namespace) -> int:
    """The console itself: Textual, over a session of this profile."""
    loaded, plan = _plan_for(args)
    from .core.session import CheckSettings, Session
    from .ui.app import ConsoleApp

    sock = None
    if args.metrics is not None:
        from .core.telemetry.exporter import bind

        try:
            sock = bind(*args.metrics)
        except OSError as exc:
            raise UsageError(f"cannot serve metrics on {args.metrics[0]}:{args.metrics[1]}: {exc.strerror}") from None
    session = Session(
        plan,
        findings=tuple(map(str, loaded.findings)),
        read_only=args.read_only,
        checks=CheckSettings.of(loaded.profile),
        via="console",
    )
    return ConsoleApp(session, metrics=sock).run() or EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    _, plan = _plan_for(args)
    return headless.watch(plan, args.metrics)


def listen_address(text: str) -> tuple[str, int]:
    """`PORT` (on loopback), `HOST:PORT` or `[V6]:PORT` for --metrics."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"want PORT or HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _args_watch(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    _metrics_option(cmd)


def _metrics_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--metrics",
        type=listen_address,
        metavar="[HOST:]PORT",
        help="serve Prometheus text of what it sees at /metrics (loopback unless a host is given; "
        f"${METRICS_TOKEN_ENV} set: scrapes must send it as a bearer token)",
    )


def cmd_alert_test(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    _, plan = _plan_for(args)
    return headless.alert_test(plan)


def cmd_ls(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes
    from .core.inventory import profile_dirs

    return headless.ls(profile_dirs(Path.cwd()), args.json, offline=args.offline)


def pick_and_open(args: argparse.Namespace) -> int:
    """`cpconsole` alone, on a terminal: the profile picker, then the console of the one picked."""
    from .core.inventory import listed_profiles, profile_dirs
    from .ui.picker import PickerApp

    dirs = profile_dirs(Path.cwd())
    chosen = PickerApp(listed_profiles(dirs), dirs).run()
    if chosen is None:
        return EXIT_OK
    return cmd_console(argparse.Namespace(profile=str(chosen), read_only=False))


def positive_int(text: str) -> int:
    value = int(text)  # ValueError: argparse says "invalid positive_int value"
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """90s, 30m, 2h, 1d."""
    number, unit = text[:-1], text[-1:]
    if unit not in DURATION_UNITS or not number.replace(".", "", 1).isdigit() or float(number) <= 0:
        raise argparse.ArgumentTypeError(f"a duration such as 90s, 30m, 2h or 1d, got {text!r}")
    return float(number) * DURATION_UNITS[unit]


def moment(text: str) -> float:
    """An ISO 8601 time (2026-12-07T03:10, UTC unless it says its offset), as seconds since the epoch."""
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a time such as 2026-12-07T03:10 or 2026-12-07T03:10+08:00, got {text!r}"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def non_negative_int(text: str) -> int:
    value = int(text)  # ValueError: argparse says "invalid non_negative_int value"
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)  # ValueError: argparse says "invalid positive_float value"
    if not value > 0:  # vllm bench takes 0 as "no requests at all", never what was meant
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _names(plan: LaunchPlan, names: list[str] | None) -> list[str] | None:
    for name in names or []:
        plan.process(name)  # UsageError names the processes there are
    return names


def _http_target(plan: LaunchPlan, target: str | None) -> str:
    """A process that serves HTTP (default: the proxy, else the first API server)."""
    servers = [p.name for p in plan.processes if p.http_port]
    chosen = target or plan.front_door
    if chosen not in servers:
        raise UsageError(f"{chosen} serves no HTTP ({did_you_mean(chosen, servers, 'targets are')})")
    return chosen


def cmd_up(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    _, plan = _plan_for(args)
    return headless.up(plan, _names(plan, args.process), args.json)


def cmd_down(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    _, plan = _plan_for(args)
    if args.orphans:
        if args.process or args.json or args.force:
            raise UsageError("--orphans goes alone (with --yes): it looks for every process of the profile")
        return headless.down_orphans(plan, yes=args.yes)
    return headless.down(plan, _names(plan, args.process), args.json, force=args.force)


def cmd_restart(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes
    from .core.orchestrate.drain import interrupts_service

    _, plan = _plan_for(args)
    why = interrupts_service(plan, args.target)
    if why and not args.allow_downtime:
        raise UsageError(f"{why}; add --allow-downtime to restart it anyway")
    return headless.restart(plan, args.target, args.json, force=args.force)


def cmd_apply(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    _, plan = _plan_for(args)
    return headless.apply(plan, dry_run=args.dry_run, yes=args.yes, allow_downtime=args.allow_downtime)


def cmd_status(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    _, plan = _plan_for(args)
    return headless.status(plan, args.json)


def cmd_ranks(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    _, plan = _plan_for(args)
    instances = sorted({p.instance for p in plan.processes if p.instance})
    if args.instance is not None and args.instance not in instances:
        raise UsageError(f"no instance {args.instance!r} ({did_you_mean(args.instance, instances, 'one of')})")
    return headless.ranks(plan, args.instance, args.json)


def cmd_journal(args: argparse.Namespace) -> int:
    from . import headless  # SSH: only for the verbs that touch nodes

    _, plan = _plan_for(args)
    if args.n <= 0:
        raise UsageError("-n is how many entries to show: 1 or more")
    return headless.journal(plan, args.n, args.json)


def cmd_logs(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    _, plan = _plan_for(args)
    names = _names(plan, args.process)
    if args.since_offset is not None and (len(names or []) != 1 or args.since_offset < 0):
        raise UsageError("--since-offset is a byte offset (0 or more) in one log: name its process with -p")
    return headless.logs(plan, names, args.follow, args.lines, args.since_offset)


def cmd_exec(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    _, plan = _plan_for(args)
    known = [n.name for n in plan.nodes]
    words: list[str] = args.words
    where, command = (words[0], words[1:]) if words else ("", [])
    command = command[1:] if command[:1] == ["--"] else command
    if not words:
        raise UsageError(f"exec NODE|--all -- CMD; nodes are {', '.join(known)}")
    if where != "--all":
        plan.node(where)  # UsageError names the nodes there are
    if not command:
        raise UsageError("exec needs a command after --")
    return headless.exec_on(plan, known if where == "--all" else [where], command)


def cmd_bench(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    loaded, plan = _plan_for(args)
    from .core.session import CheckSettings
    from .core.smoke.bench import load_runs, server_process
    from .results import bench_report

    if args.list:
        sys.stdout.write(bench_report(load_runs(plan.profile), _format(args)))
        return EXIT_OK
    defaults = CheckSettings.of(loaded.profile).bench
    settings = dataclasses.replace(
        defaults,
        input_len=args.input_len or defaults.input_len,
        output_len=args.output_len or defaults.output_len,
        num_prompts=args.num_prompts or defaults.num_prompts,
        max_concurrency=args.max_concurrency,
        request_rate=args.request_rate or defaults.request_rate,
        save_detailed=args.detailed,
        target=_http_target(plan, args.target),
    )
    node = args.node or server_process(plan).node  # where vLLM (and so vllm bench) is installed
    plan.node(node)  # UsageError names the nodes there are
    return headless.bench(plan, node, settings, _format(args))


def cmd_sweep(args: argparse.Namespace) -> int:
    _, plan = _plan_for(args)
    from .core.smoke.sweep import LENGTHS, SweepSettings, load_sweeps, parse_lengths
    from .results import sweep_report

    if args.list:
        sys.stdout.write(sweep_report(load_sweeps(plan.profile), _format(args)))
        return EXIT_OK
    try:
        lengths = parse_lengths(args.lengths) if args.lengths else LENGTHS
    except ValueError as exc:
        raise UsageError(f"--lengths: {exc}") from None
    settings = SweepSettings(lengths, args.repeat, args.max_tokens, _http_target(plan, args.target))
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    return headless.sweep(plan, settings, _format(args))


def cmd_accuracy(args: argparse.Namespace) -> int:
    loaded, plan = _plan_for(args)
    from .core.profile.serving_rules import shortest_context
    from .core.smoke.accuracy import PROMPT_ROOM, answer_budget, datasets, load_accuracy
    from .core.smoke.aisbench import DATASETS as AISBENCH_DATASETS
    from .core.smoke.aisbench import answer_room
    from .results import accuracy_report

    args.dataset = args.dataset or ("aime2024" if args.aisbench else "gsm8k")
    gate = loaded.profile.accuracy.get(args.dataset)
    if args.list:
        sys.stdout.write(accuracy_report(load_accuracy(plan.profile), _format(args), gate.min if gate else None))
        return EXIT_OK
    room = shortest_context(loaded.profile)
    if args.aisbench:
        if args.dataset not in AISBENCH_DATASETS:
            known = did_you_mean(args.dataset, list(AISBENCH_DATASETS), "AISBench's are")
            raise UsageError(f"--dataset: {args.dataset!r} is not one cpconsole runs AISBench on ({known})")
        max_out_len = args.max_tokens or answer_room(room)
        if room is not None and max_out_len + PROMPT_ROOM > room:
            raise UsageError(f"--max-tokens {max_out_len} and a question do not fit max_model_len {room}")
        from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

        target = _http_target(plan, args.target)
        return headless.aisbench(
            plan, args.dataset, target, args.limit, max_out_len, _format(args), gate.min if gate else None
        )
    if args.dataset not in datasets():
        raise UsageError(
            f"--dataset: no built-in dataset {args.dataset!r} ({did_you_mean(args.dataset, datasets(), 'there are')})"
        )
    max_tokens = args.max_tokens or answer_budget(room)
    if room is not None and max_tokens + PROMPT_ROOM > room:
        raise UsageError(
            f"--max-tokens {max_tokens} and a question do not fit max_model_len {room}: "
            f"at most {max(1, room - PROMPT_ROOM)}"
        )
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    target = _http_target(plan, args.target)
    return headless.accuracy(
        plan, args.dataset, target, args.limit, max_tokens, _format(args), gate.min if gate else None
    )


def cmd_bundle(args: argparse.Namespace) -> int:
    loaded, plan = _plan_for(args)
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    out = Path(args.output) if args.output else None
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"-o {args.output}: no directory {out.parent}")
    return headless.bundle(plan, loaded.path, out, args.since, args.around, args.max_mb << 20)


def cmd_smoke(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes

    loaded, plan = _plan_for(args)
    target = _http_target(plan, args.target)
    smoke = loaded.profile.smoke
    needle = args.needle if args.needle is not None else (smoke.needle_tokens if smoke else None)
    try:
        depths = [float(d) for d in args.depths.split(",")]
    except ValueError:
        depths = []
    if not depths or not all(0 <= d <= 1 for d in depths):
        raise UsageError(f"--depths wants fractions between 0 and 1, like 0.1,0.5,0.9 (got {args.depths!r})")
    max_tokens = args.max_tokens or (smoke.max_tokens if smoke else 64)
    if needle and args.needle is not None:  # the profile's own needle is checked at validate (request_lengths)
        from .core.profile.serving_rules import shortest_context

        limit = shortest_context(loaded.profile)
        if limit is not None and needle + max_tokens > limit:
            raise UsageError(
                f"--needle {needle} + {max_tokens} tokens out exceed max_model_len {limit}: the servers would "
                f"refuse it; use --needle {max(limit - max_tokens, 0)} or less"
            )
    from .core.session import CheckSettings

    checks = CheckSettings.of(loaded.profile)
    return headless.smoke(plan, checks, target, needle or None, depths, max_tokens, args.json)


def cmd_preflight(args: argparse.Namespace) -> int:
    from . import headless  # the orchestrator, SSH, HTTP: only for the verbs that touch nodes
    from .core.session import CheckSettings

    loaded, plan = _plan_for(args)
    warnings = [str(f) for f in loaded.findings if f.severity == "warning"]
    return headless.preflight(
        plan,
        CheckSettings.of(loaded.profile),
        args.json,
        hash_weights=args.hash_weights,
        profile_warnings=warnings,
        verbose=args.verbose,
    )


def cmd_containers(args: argparse.Namespace) -> int:
    from . import headless

    _, plan = _plan_for(args)
    return headless.containers(plan, args.action, args.json, yes=args.yes)


def _profile_argument(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("profile", metavar="PROFILE", help="profile YAML file")


def _process_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--process", "-p", action="append", metavar="NAME", help="only this process (repeatable)")


def _json_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--json", action="store_true", help="machine-readable output")


def _export_options(cmd: argparse.ArgumentParser) -> None:
    """--json or --markdown (for a ticket or a post-mortem); plain text by default."""
    shown = cmd.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="machine-readable output")
    shown.add_argument("--markdown", action="store_true", help="Markdown: the table (and chart) for a ticket")


def _target_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--target", metavar="NAME", help="proxy (default) or an API server process")


def _format(args: argparse.Namespace) -> Format:
    return "json" if args.json else "markdown" if args.markdown else "text"


def _force_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--force", action="store_true", help="stop processes another profile started in this one's run directories too"
    )


def _args_render(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    _process_option(cmd)
    cmd.add_argument("--format", choices=("sh", "json"), default="sh")
    cmd.add_argument(
        "--show-secrets", action="store_true", help="write the api_key into the scripts (to run one by hand)"
    )
    cmd.add_argument("--containers", action="store_true", help="the `docker run` of each container instead")


def _args_containers(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    cmd.add_argument("action", choices=("create", "check", "remove"))
    _json_option(cmd)
    cmd.add_argument("--yes", action="store_true", help="remove without asking")


def _args_up(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    _process_option(cmd)
    _json_option(cmd)


def _args_down(cmd: argparse.ArgumentParser) -> None:
    _args_up(cmd)
    _force_option(cmd)
    cmd.add_argument(
        "--orphans",
        action="store_true",
        help="find the profile's processes that nothing tracks any more (run directory gone), list them, stop them",
    )
    cmd.add_argument("--yes", action="store_true", help="with --orphans: stop them without asking")


def _args_restart(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    cmd.add_argument("target", metavar="TARGET", help="an instance (e.g. prefill), a process, or proxy")
    cmd.add_argument(
        "--allow-downtime",
        action="store_true",
        help="restart even when no other instance of its role serves meanwhile (requests fail until it is back)",
    )
    _json_option(cmd)
    _force_option(cmd)


def _args_status(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    _json_option(cmd)


def _args_ranks(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    cmd.add_argument("instance", nargs="?", help="only this instance's ranks")
    _json_option(cmd)


def _args_journal(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    cmd.add_argument("-n", type=int, default=50, help="how many of the last entries (default 50)")
    _json_option(cmd)


def _args_logs(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    _process_option(cmd)
    cmd.add_argument("--follow", "-f", action="store_true")
    cmd.add_argument("--lines", "-n", type=int, default=50, help="lines of each log to show first")
    cmd.add_argument(
        "--since-offset",
        type=int,
        metavar="BYTES",
        help="one process's log as it is from this byte on, unprefixed; the next offset goes to stderr",
    )


def _args_exec(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    cmd.add_argument("words", nargs=argparse.REMAINDER, metavar="NODE|--all -- CMD")


def _args_preflight(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    cmd.add_argument(
        "--hash-weights",
        action="store_true",
        help="compare every shard's sha256 across the nodes too (reads all the weights: slow)",
    )
    cmd.add_argument("--verbose", "-v", action="store_true", help="every result on its own line, not folded")
    _json_option(cmd)


def _args_bench(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    cmd.add_argument("--node", help="where vllm bench runs (default: the first API server's node)")
    cmd.add_argument("--input-len", type=int, help="--random-input-len (default: the profile's bench section)")
    cmd.add_argument("--output-len", type=int, help="--random-output-len")
    cmd.add_argument("--num-prompts", type=int)
    cmd.add_argument("--max-concurrency", type=int)
    cmd.add_argument(
        "--request-rate",
        type=positive_float,
        metavar="PER_S",
        help="Poisson arrivals per second (default: the profile's, else all at once)",
    )
    cmd.add_argument("--detailed", action="store_true", help="keep per-request TTFTs (--save-detailed)")
    cmd.add_argument("--target", metavar="NAME", help="proxy (default) or an API server process to load")
    cmd.add_argument("--list", action="store_true", help="only show the stored runs of this profile")
    _export_options(cmd)


def _args_sweep(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    cmd.add_argument("--lengths", metavar="LIST", help="prompt lengths in tokens, k = 1024 (default: 8k,32k,64k,128k)")
    cmd.add_argument("--repeat", type=positive_int, default=3, metavar="N", help="requests per length (default 3)")
    cmd.add_argument("--max-tokens", type=positive_int, default=16, metavar="N", help="tokens out (default 16)")
    _target_option(cmd)
    cmd.add_argument("--list", action="store_true", help="only show the stored sweeps of this profile")
    _export_options(cmd)


def _args_accuracy(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    cmd.add_argument(
        "--dataset", metavar="NAME", help="a built-in dataset (default gsm8k), or AISBench's (default aime2024)"
    )
    cmd.add_argument(
        "--aisbench",
        action="store_true",
        help="run AISBench where the API server runs, as the guide does (aime2024, gsm8k, math500, gpqa, ceval, mmlu)",
    )
    cmd.add_argument("--limit", type=positive_int, metavar="N", help="its first N items (default: all it ships)")
    _target_option(cmd)
    cmd.add_argument(
        "--max-tokens",
        type=positive_int,
        metavar="N",
        help="answer budget per item (default 1024, less to fit max_model_len)",
    )
    cmd.add_argument("--list", action="store_true", help="only show the stored runs of this profile")
    _export_options(cmd)


def _args_bundle(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    when = cmd.add_mutually_exclusive_group()
    when.add_argument(
        "--since",
        type=duration,
        default=2 * 3600,
        metavar="DURATION",
        help="the window: the last 2h (default), 30m, 1d…",
    )
    when.add_argument(
        "--around",
        type=moment,
        metavar="TIME",
        help="the window: 30 minutes either side of this time (UTC unless it says)",
    )
    cmd.add_argument(
        "-o", "--output", metavar="FILE", help="where to write it (default ./cpconsole-bundle-PROFILE-TIME.tar.gz)"
    )
    cmd.add_argument(
        "--max-mb", type=positive_int, default=64, metavar="N", help="size cap of its pieces (default 64 MiB)"
    )


def _args_apply(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    cmd.add_argument("--dry-run", action="store_true", help="only show the steps")
    cmd.add_argument("--yes", action="store_true", help="take them without asking")
    cmd.add_argument(
        "--allow-downtime", action="store_true", help="also restart what no other instance serves for meanwhile"
    )


def _args_smoke(cmd: argparse.ArgumentParser) -> None:
    _profile_argument(cmd)
    _target_option(cmd)
    cmd.add_argument(
        "--needle",
        type=non_negative_int,
        metavar="TOKENS",
        help="needle prompt length (default: the profile's smoke.needle_tokens; 0: no needle)",
    )
    cmd.add_argument("--depths", default="0.5", help="where the needle sits, fractions (default 0.5)")
    cmd.add_argument("--max-tokens", type=positive_int, help="answer budget (default: the profile's smoke.max_tokens)")
    _json_option(cmd)


def _args_ls(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--offline", action="store_true", help="list the profiles only: do not ask their nodes")
    _json_option(cmd)


def _no_args(cmd: argparse.ArgumentParser) -> None:
    return None


@dataclass(frozen=True)
class Verb:
    run: Callable[[argparse.Namespace], int]
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] = _profile_argument


VERBS: dict[str, Verb] = {
    "validate": Verb(cmd_validate, "check a profile; exit 2 with file:line:col errors"),
    "plan": Verb(cmd_summary, "summarise the processes a profile starts, where"),
    "render": Verb(cmd_render, "print the exact launch commands of every process", _args_render),
    "schema": Verb(cmd_schema, "print the profile's JSON Schema (for editor completion)", _no_args),
    "ls": Verb(cmd_ls, "the profiles in ./profiles and ~/.config/cpconsole/profiles, and which run", _args_ls),
    "up": Verb(cmd_up, "start what is not running (instances side by side, then the proxy) until ready", _args_up),
    "down": Verb(cmd_down, "stop the processes, proxy first, master last", _args_down),
    "restart": Verb(cmd_restart, "restart an instance (all its ranks) or the proxy", _args_restart),
    "apply": Verb(
        cmd_apply, "make what runs what the edited profile says, one instance at a time, without downtime", _args_apply
    ),
    "status": Verb(cmd_status, "adopt what runs and show every process", _args_status),
    "ranks": Verb(
        cmd_ranks, "every rank: node, chip, TP/PCP rank, DCP group, kv port, NPU IP, state from the logs", _args_ranks
    ),
    "journal": Verb(
        cmd_journal, "who did what to the deployment, from where, how it ended (kept on its first node)", _args_journal
    ),
    "watch": Verb(
        cmd_watch, "watch without a screen, send the alerts (webhooks, tmux, bell), serve metrics", _args_watch
    ),
    "alert-test": Verb(cmd_alert_test, "send a test notification to every channel of the profile's notify"),
    "logs": Verb(cmd_logs, "print (and follow) the logs, merged with process prefixes", _args_logs),
    "exec": Verb(cmd_exec, "run a command on a node (or --all) and group identical output", _args_exec),
    "preflight": Verb(
        cmd_preflight,
        "check every node before launch: chips, NPU links and pings, ports, model, versions",
        _args_preflight,
    ),
    "containers": Verb(
        cmd_containers,
        "create, check or remove the profile's containers (the guide's docker run, every chip mapped)",
        _args_containers,
    ),
    "bench": Verb(
        cmd_bench, "run vllm bench serve against the proxy on a node; keep and compare the results", _args_bench
    ),
    "sweep": Verb(
        cmd_sweep, "TTFT (and its prefill / hand-off split) against prompt length; kept and compared", _args_sweep
    ),
    "bundle": Verb(
        cmd_bundle,
        "one .tar.gz of an incident: logs, manifests, scripts, npu-smi, hccn, versions, plogs, alerts, a summary",
        _args_bundle,
    ),
    "smoke": Verb(
        cmd_smoke, "health, probe path, a completion, the long-context needle; exit 0 only if all pass", _args_smoke
    ),
    "accuracy": Verb(
        cmd_accuracy,
        "score answers to a public dataset's items through the proxy; exit 1 below the profile's minimum",
        _args_accuracy,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cpconsole",
        description="Operations console for vLLM-Ascend context-parallel PD deployments.",
        epilog=f"With only a PROFILE, cpconsole opens the console (keys: {console_keys_hint(keys_now())}).",
    )
    parser.add_argument("--version", action="version", version=f"cpconsole {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, verb in VERBS.items():
        cmd = sub.add_parser(name, help=verb.help, description=verb.help)
        cmd.set_defaults(func=verb.run)
        verb.arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and not argv[0].startswith("-") and argv[0] not in VERBS:
        # `cpconsole PROFILE`: the console itself
        console = argparse.ArgumentParser(prog="cpconsole")
        console.add_argument("profile", metavar="PROFILE")
        console.add_argument(
            "--read-only", action="store_true", help="watch only: no up, down, restart or exec from this console"
        )
        _metrics_option(console)
        args = console.parse_args(argv)
        args.func = cmd_console
    else:
        args = parser.parse_args(argv)
        if args.command is None:
            on_terminal = not argv and sys.stdin.isatty() and sys.stdout.isatty()
            if not on_terminal:
                parser.print_help()
                return EXIT_USAGE
            args.func = pick_and_open
    from .core.profile import ProfileError  # after parsing: --help and usage errors need none of it

    if args.func not in (cmd_console, pick_and_open):  # Textual owns the terminal there
        sys.stdout = SafeStream(sys.stdout)
        sys.stderr = SafeStream(sys.stderr)

    try:
        return int(args.func(args))
    except ProfileError as exc:
        for finding in exc.findings:
            print(finding, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"cpconsole: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `cpconsole status --json | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # or the exit flush fails again
        return EXIT_OK
    except Exception as exc:  # a bug of ours: say so in one line, full detail on request
        if os.environ.get("CPCONSOLE_DEBUG"):
            raise
        print(f"cpconsole: internal error: {exc!r} (set CPCONSOLE_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
