"""What the nodes really run, judged like what the profile declares: the installed vLLM and
vllm-ascend through the same version rules `validate` applies (profile/rules.py version_rules), a
declared version that is not the installed one, and context parallel on chips that cannot do it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

from ..plan import LaunchPlan
from ..profile.rules import version_rules
from ..profile.schema import Profile, Versions, flag_name
from ..profile.versions import version_key
from ..profile.vllm_arguments import ArgumentSet, from_help, released
from .facts import UNKNOWN, NodeFacts
from .report import ALL_NODES, Check

# npu-smi's chip name on Atlas A3 (800T/800I A3); A2 reads 910B1…910B4 or 910B2C, older 910A, 310P3
A3_CHIP = "Ascend910"
DECLARED = {"vllm": "vllm", "vllm-ascend": "vllm_ascend"}  # software as preflight reads it → versions key


def installed(facts: Mapping[str, NodeFacts]) -> dict[str, str]:
    """The version most nodes run of vllm and vllm-ascend (nodes that differ are preflight's
    `versions` check; unknown ones are left out)."""
    found: dict[str, str] = {}
    for software in DECLARED:
        seen = Counter(f.versions[software] for f in facts.values() if f.versions.get(software, UNKNOWN) != UNKNOWN)
        if seen:
            found[software] = seen.most_common(1)[0][0]
    return found


def version_checks(profile: Profile, running: Mapping[str, str]) -> list[Check]:
    """A declared version the nodes do not run, with both; what the version rules say of the
    installed versions that they did not already say of the declared ones."""
    out = []
    for software, key in DECLARED.items():
        want, have = getattr(profile.versions, key), running.get(software)
        if want and have and version_key(want) != version_key(have):
            out.append(
                Check(
                    ALL_NODES,
                    "declared version",
                    "WARN",
                    f"{software}: the profile says {want}, the nodes run {have}",
                    f'set versions.{key}: "{have}" so that validate judges what runs',
                )
            )
    real = Versions(
        vllm=running.get("vllm") or profile.versions.vllm,
        vllm_ascend=running.get("vllm-ascend") or profile.versions.vllm_ascend,
    )
    said = {(severity, path) for severity, path, _ in version_rules(profile)}
    for severity, path, message in version_rules(profile.model_copy(update={"versions": real})):
        if (severity, path) not in said and severity in ("error", "warning"):
            where = ".".join(map(str, path))
            hint = f"the installed version decides, whatever the profile declares ({where})"
            out.append(Check(ALL_NODES, "installed version", "FAIL" if severity == "error" else "WARN", message, hint))
    return out


def chip_checks(plan: LaunchPlan, facts: Mapping[str, NodeFacts]) -> list[Check]:
    """Context parallel (PCP or DCP > 1) runs on Atlas A3 only: each node of such an instance whose
    npu-smi names another chip fails."""
    out = []
    for proc in plan.processes:
        pcp = proc.int_flag("--prefill-context-parallel-size", "-pcp") or 1
        dcp = proc.int_flag("--decode-context-parallel-size", "-dcp") or 1
        names = facts[proc.node].chip_names if proc.node in facts else set()
        if (pcp > 1 or dcp > 1) and names:
            ok = names == {A3_CHIP}
            evidence = f"{', '.join(sorted(names))} chips; {proc.name} runs PCP {pcp} × DCP {dcp}"
            hint = "context parallel needs Atlas A3 (npu-smi: Ascend910): run this instance on A3 nodes or set PCP and DCP to 1"
            out.append(Check.verdict(proc.node, "chips for CP", ok, evidence, hint, same="Atlas A3"))
    return out


def argument_checks(plan: LaunchPlan, facts: Mapping[str, NodeFacts]) -> list[Check]:
    """Each process's flags against the vLLM installed on its node — the data of that release, or
    for a release without data its own `vllm serve --help=all`: a flag that vLLM does not take, or a
    choice it does not offer, fails there before minutes of loading."""
    out = []
    for proc in plan.processes:
        found = facts.get(proc.node)
        if proc.role == "proxy" or found is None or "serve" not in proc.argv:
            continue
        version = found.versions.get("vllm", UNKNOWN)
        known = released(version) or (from_help(found.serve_help, version) if found.serve_help else None)
        if known is None:
            continue
        wrong = list(argv_problems(proc.argv[proc.argv.index("serve") + 1 :], known))
        evidence = "; ".join(wrong) if wrong else f"all {proc.name}'s flags are vLLM {known.vllm}'s"
        hint = "fix the key in vllm_args (cpconsole validate checks against vLLM's own argument data too)"
        out.append(
            Check.verdict(proc.node, "vllm arguments", not wrong, evidence, hint, same="known to the installed vLLM")
        )
    return out


def argv_problems(argv: Sequence[str], known: ArgumentSet) -> Iterator[str]:
    """What vLLM's parser would refuse in an argv: unknown flags, values outside the choices."""
    for index, word in enumerate(argv):
        if not word.startswith("--"):
            continue
        name = flag_name(word[2:].split("=", 1)[0])
        arg = known.by_flag.get(name)
        if arg is None:
            yield f"--{name} is not an argument of vLLM {known.vllm}"
            continue
        value = word.split("=", 1)[1] if "=" in word else (argv[index + 1] if index + 1 < len(argv) else "")
        if arg.choices and not value.startswith("-") and value not in arg.choices:
            yield f"--{name} {value}: vLLM {known.vllm} takes one of {', '.join(arg.choices)}"
