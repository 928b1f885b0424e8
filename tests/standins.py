"""Stand-ins for programs these machines do not have."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

# `docker exec [--env K=V]... [--workdir D] CONTAINER CMD...` runs CMD here, as docker exec runs it
# inside the container: out of the client's process group (a signal to the client does not reach
# it, as with docker), the client waiting for its exit code. It gives and refuses what docker does:
# - the environment is the image's (`Config.Env` of NAME.json, with PATH as this machine's or as
#   $DOCKER_STAND_IN_DIR/NAME.path says for an image without some tool) with HOME=/root (docker
#   sets it for the container's user) and the --env pairs — never the client's: a login shell's
#   ~/.bashrc or the calling shell's exports do not reach the process, nor does the image's own
#   ~/.bashrc unless what runs is a bash that reads it (docker exec reference);
# - a relative --workdir is refused: the OCI runtime spec requires an absolute cwd, runc refuses
#   another ("Cwd must be an absolute path", libcontainer/configs/validate), and docker exec
#   reports a failed runtime exec with 126, as for a command that cannot be invoked;
# - with $DOCKER_STAND_IN_DIR (the stand-in keeping containers as NAME.json), a container that does
#   not exist or does not run: the daemon's "No such container: NAME" and "container NAME is not
#   running", which the docker CLI exits 1 with (an error that is no StatusError).
# - without --workdir, the process starts in the image's WorkingDir (WORKDIR), else in /.
# The container's file system is this machine's, under the directory $DOCKER_STAND_IN_DIR/NAME.root
# names, when it does (an image with /vllm-workspace in it); its /root (HOME) is that directory's
# root/, else an empty directory beside the stand-in (never this machine's /root).
EXEC = """
import json, os, subprocess, sys

args, env, workdir = sys.argv[1:], {}, None
while args and args[0] in ("--env", "--workdir"):
    flag, value, args = args[0], args[1], args[2:]
    if flag == "--env":
        key, _, given = value.partition("=")
        env[key] = given if "=" in value else os.environ.get(key, "")  # `--env K`: the client's K
    else:
        workdir = value
name, command = args[0], args[1:]
where = os.environ.get("DOCKER_STAND_IN_DIR")
state = os.path.join(where, name) if where else None
if state is not None:
    if not os.path.exists(state + ".json"):
        sys.exit(print(f"Error response from daemon: No such container: {name}", file=sys.stderr) or 1)
    if not json.load(open(state + ".json"))["State"]["Running"]:
        sys.exit(print(f"Error response from daemon: container {name} is not running", file=sys.stderr) or 1)
path = open(state + ".path").read().strip() if state and os.path.exists(state + ".path") else os.environ["PATH"]
root = open(state + ".root").read().strip() if state and os.path.exists(state + ".root") else ""
home = root + "/root" if root else os.path.join(os.path.dirname(os.path.abspath(__file__)), "image-home")
config = json.load(open(state + ".json"))["Config"] if state else {}
image = dict(item.partition("=")[::2] for item in config.get("Env") or [])
image.update(PATH=path, HOME=home)
failed = "OCI runtime exec failed: exec failed: unable to start container process: "
cwd = root + (config.get("WorkingDir") or "/")  # no --workdir: the image's WORKDIR
if workdir is not None:
    if not workdir.startswith("/"):
        sys.exit(print(failed + "Cwd must be an absolute path: unknown", file=sys.stderr) or 126)
    cwd = root + workdir
    if not os.path.isdir(cwd):
        message = f'chdir to cwd ("{workdir}") set in config.json failed: no such file or directory: unknown'
        sys.exit(print(failed + message, file=sys.stderr) or 126)
if os.environ.get("DOCKER_STAND_IN_LOG"):
    open(os.environ["DOCKER_STAND_IN_LOG"], "a").write(name + "\\n")
try:
    child = subprocess.Popen(command, env={**image, **env}, cwd=cwd, start_new_session=True)
except FileNotFoundError:
    sys.exit(print(failed + f'exec: "{command[0]}": executable file not found in $PATH: unknown', file=sys.stderr) or 127)
code = child.wait()
sys.exit(128 - code if code < 0 else code)  # killed by a signal: 128 + its number, as docker exec says
"""
DOCKER = """#!/bin/sh
case "$1" in
  exec) shift; exec {python} {exec_stand_in} "$@" ;;
  run|rm|inspect|pull|image) exec {python} {state_keeper} "$@" ;;
  *) echo "the stand-in knows exec, run, rm, inspect, pull and image inspect" >&2; exit 125 ;;
esac
"""

# `docker run|rm|inspect`: containers as files $DOCKER_STAND_IN_DIR/NAME.json holding what `docker
# inspect` prints of them (the fields cpconsole reads), created by `run` from its flags.
# `docker pull` and `docker image inspect`: the node's images in $DOCKER_STAND_IN_IMAGES (a node's
# own daemon; default $DOCKER_STAND_IN_DIR/images.json), reference → digest, pulled from a registry: $DOCKER_STAND_IN_REGISTRY, a JSON file of reference
# → {digest, layers} (unset: every reference, three layers, its digest from its name), each layer
# taking $DOCKER_STAND_IN_PULL_S. As docker does (docs.docker.com `docker image pull`, its examples):
# a reference the registry lacks fails with "manifest … not found" (exit 1); the output is one
# "<layer>: Pulling fs layer" per layer, "<layer>: Pull complete" as each lands, the digest and
# status lines and the reference; `run` of an image the node lacks pulls it first ("Unable to find
# image … locally"); `image inspect` of one it lacks: "No such image" (exit 1).
STATE_KEEPER = """
import hashlib, json, os, sys, time

command, args = sys.argv[1], sys.argv[2:]
path = os.path.join(os.environ["DOCKER_STAND_IN_DIR"], args[-1] + ".json")
local_file = os.environ.get("DOCKER_STAND_IN_IMAGES") or os.path.join(os.environ["DOCKER_STAND_IN_DIR"], "images.json")
local = json.load(open(local_file)) if os.path.exists(local_file) else {}


def pull(ref, out):
    registry_file = os.environ.get("DOCKER_STAND_IN_REGISTRY")
    registry = json.load(open(registry_file)) if registry_file else None
    if registry is not None and ref not in registry:
        sys.exit(print(f"Error response from daemon: manifest for {ref} not found: manifest unknown: manifest unknown", file=sys.stderr) or 1)
    entry = registry[ref] if registry is not None else {"digest": "sha256:" + hashlib.sha256(ref.encode()).hexdigest(), "layers": 3}
    repo, _, tag = ref.rpartition(":")
    print(f"{tag}: Pulling from {repo.split('/', 1)[-1]}", file=out, flush=True)
    if local.get(ref) != entry["digest"]:
        layers = [hashlib.sha256(f"{entry['digest']}{i}".encode()).hexdigest()[:12] for i in range(entry["layers"])]
        for layer in layers:
            print(f"{layer}: Pulling fs layer", file=out, flush=True)
        for layer in layers:
            time.sleep(float(os.environ.get("DOCKER_STAND_IN_PULL_S", "0")))
            print(f"{layer}: Pull complete", file=out, flush=True)
        status = f"Downloaded newer image for {ref}"
    else:
        status = f"Image is up to date for {ref}"
    print(f"Digest: {entry['digest']}\\nStatus: {status}", file=out, flush=True)
    local[ref] = entry["digest"]
    open(local_file, "w").write(json.dumps(local))


if command == "pull":
    pull(args[-1], sys.stdout)
    print(args[-1])
elif command == "image":
    if args[-1] not in local:
        sys.exit(print(f"Error response from daemon: No such image: {args[-1]}", file=sys.stderr) or 1)
    print(json.dumps([args[-1].rpartition(":")[0] + "@" + local[args[-1]]]))
elif command == "inspect":
    if not os.path.exists(path):
        sys.exit(print(f"Error: No such object: {args[-1]}", file=sys.stderr) or 1)
    print("[" + open(path).read() + "]")
elif command == "rm":
    if not os.path.exists(path):
        sys.exit(print(f"Error response from daemon: No such container: {args[-1]}", file=sys.stderr) or 1)
    os.remove(path)
    print(args[-1])
else:
    flags, devices, binds, rest = {}, [], [], list(args)
    while rest and rest[0].startswith("-"):
        word = rest.pop(0)
        if "=" in word:
            key, value = word.split("=", 1)
            flags[key] = value
        elif word == "--detach":
            continue
        elif word == "--device":
            devices.append(rest.pop(0))
        elif word == "--volume":
            binds.append(rest.pop(0))
        else:
            flags[word] = rest.pop(0)
    name, image = flags["--name"], rest[0]
    path = os.path.join(os.environ["DOCKER_STAND_IN_DIR"], name + ".json")
    if os.path.exists(path):
        sys.exit(print(f'docker: Error response from daemon: Conflict. The container name "/{name}" is already in use', file=sys.stderr) or 125)
    if image not in local:
        print(f"Unable to find image '{image}' locally", file=sys.stderr)
        pull(image, sys.stderr)
    size = flags.get("--shm-size", "64m")
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    shm = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    state = {
        "Name": "/" + name,
        "State": {"Running": True},
        "Config": {"Image": image, "Cmd": rest[1:]},
        "HostConfig": {
            "NetworkMode": flags.get("--net", "bridge"),
            "Privileged": False,
            "ShmSize": shm,
            "Binds": binds,
            "Devices": [{"PathOnHost": d, "PathInContainer": d, "CgroupPermissions": "rwm"} for d in devices],
        },
    }
    open(path, "w").write(json.dumps(state))
    print("4f0c1d2e3b4a" + "0" * 52)
"""


def container_state(
    state_dir: Path,
    name: str,
    *,
    running: bool = True,
    privileged: bool = False,
    devices: Iterable[str] = (),
    env: dict[str, str] | None = None,
    workdir: str = "",
) -> None:
    """A container made by hand, as `docker inspect` would show it to the stand-in (`env`, `workdir`:
    its image's Config.Env and WorkingDir)."""
    config = {"NetworkMode": "host", "Privileged": privileged, "ShmSize": 1024**3, "Binds": []}
    config["Devices"] = [{"PathOnHost": d, "PathInContainer": d, "CgroupPermissions": "rwm"} for d in devices]
    image = {"Image": "by-hand", "Env": [f"{k}={v}" for k, v in (env or {}).items()], "WorkingDir": workdir}
    state = {"Name": "/" + name, "State": {"Running": running}, "Config": image, "HostConfig": config}
    (state_dir / f"{name}.json").write_text(json.dumps(state))


# Ubuntu's /root/.bashrc (base-files' dot.bashrc) begins by returning from any shell without a prompt
UBUNTU_BASHRC_HEAD = """# ~/.bashrc: executed by bash(1) for non-login shells.
# If not running interactively, don't do anything
[ -z "$PS1" ] && return
"""


def vllm_ascend_image(state_dir: Path, name: str, root: Path, *, running: bool = True) -> dict[str, str]:
    """A running container of a vllm-ascend image, its file system under `root` (paths in it are
    written with that prefix: the stand-in does not change root). As the real image it has:
    - `Config.Env` with CANN's toolkit variables (cann-container-image's Dockerfile sets them by ENV),
      LD_LIBRARY_PATH without /usr/local/lib;
    - a ~/.bashrc behind Ubuntu's interactive-only guard that sources the toolkit's and NNAL's
      set_env.sh (cann-container-image) and adds jemalloc to LD_PRELOAD and /usr/local/lib — where the
      driver's libascend_hal.so is — to LD_LIBRARY_PATH (vllm-ascend's Dockerfile.a3);
    - NNAL's set_env.sh reads ${BASH_SOURCE[0]}, as the real one: it needs bash;
    - the simulated torch_npu there needs libascend_hal.so (CPCONSOLE_SIM_NEED_LIBS, sim/libs.py).
    Returns the image's Config.Env."""
    ascend = root / "usr/local/Ascend"
    for folder in ("ascend-toolkit/latest/lib64", "nnal/atb/latest/atb/cxx_abi_1/lib"):
        (ascend / folder).mkdir(parents=True, exist_ok=True)
    (root / "usr/local/lib").mkdir(parents=True, exist_ok=True)
    (root / "usr/local/lib/libascend_hal.so").write_bytes(b"")
    (root / "root").mkdir(parents=True, exist_ok=True)
    (ascend / "ascend-toolkit/set_env.sh").write_text(
        f"export ASCEND_TOOLKIT_HOME={ascend}/ascend-toolkit/latest\n"
        f"export LD_LIBRARY_PATH={ascend}/ascend-toolkit/latest/lib64:$LD_LIBRARY_PATH\n"
    )
    (ascend / "nnal/atb/set_env.sh").write_text(
        'atb_home=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/latest/atb/cxx_abi_1\n'
        "export ATB_HOME_PATH=$atb_home\nexport LD_LIBRARY_PATH=$atb_home/lib:$LD_LIBRARY_PATH\n"
    )
    env = {
        "ASCEND_TOOLKIT_HOME": f"{ascend}/ascend-toolkit/latest",
        "LD_LIBRARY_PATH": f"{ascend}/ascend-toolkit/latest/lib64:{ascend}/driver/lib64/driver",
        "CPCONSOLE_SIM_NEED_LIBS": "libascend_hal.so",
    }
    jemalloc = root / "usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    jemalloc.parent.mkdir(parents=True, exist_ok=True)
    if not jemalloc.exists():  # a library that loads, as jemalloc does in the image
        jemalloc.symlink_to(
            next(Path(p) for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib64/libm.so.6") if Path(p).exists())
        )
    (root / "root/.bashrc").write_text(
        UBUNTU_BASHRC_HEAD
        + f"source {ascend}/ascend-toolkit/set_env.sh\nsource {ascend}/nnal/atb/set_env.sh\n"
        + f"export LD_PRELOAD={jemalloc}:\n"  # Dockerfile.a3's lines, $LD_PRELOAD / $LD_LIBRARY_PATH as expanded at build
        + f"export LD_LIBRARY_PATH={env['LD_LIBRARY_PATH']}:{root}/usr/local/lib\n"
    )
    (root / "workspace").mkdir(exist_ok=True)
    container_state(state_dir, name, running=running, env=env, workdir="/workspace")  # Dockerfile.a3's WORKDIR
    (state_dir / f"{name}.root").write_text(str(root))
    return env


def install_docker_stand_in(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    docker, keeper, runner = bin_dir / "docker", bin_dir / "docker_state.py", bin_dir / "docker_exec.py"
    keeper.write_text(STATE_KEEPER)
    runner.write_text(EXEC)
    (bin_dir / "image-home").mkdir(exist_ok=True)  # the /root of an image without a root here
    # the system's Python (the stand-in needs only the standard library): an unprivileged login user
    # may not reach the venv's interpreter under /root
    system = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    docker.write_text(
        DOCKER.replace("{python}", shlex.quote(system))
        .replace("{state_keeper}", shlex.quote(str(keeper)))
        .replace("{exec_stand_in}", shlex.quote(str(runner)))
    )
    docker.chmod(0o755)
    bin_dir.chmod(0o755)
    return docker


# sudo(8) for a user the sudoers policy asks a password of: with -n (non-interactive) it refuses
# with "sudo: a password is required" (exit 1); without -n and without a terminal to ask on it
# refuses as well ("a terminal is required to read the password"); on a terminal it asks, and waits.
SUDO = """#!/bin/sh
case "$1" in
  -n|-n*) echo "sudo: a password is required" >&2; exit 1 ;;
esac
if [ -t 0 ]; then printf '[sudo] password for %s: ' "$(id -un)" >&2; read -r _; exit 1; fi
echo "sudo: a terminal is required to read the password; either use the -S option to read from standard input or configure an askpass helper" >&2
exit 1
"""


def install_sudo_stand_in(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    sudo = bin_dir / "sudo"
    sudo.write_text(SUDO)
    sudo.chmod(0o755)
    return sudo
