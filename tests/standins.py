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
# - the environment is the image's (`Config.Env`: here PATH, as this machine's or as
#   $DOCKER_STAND_IN_DIR/NAME.path says for an image without some tool) with HOME=/root (docker
#   sets it for the container's user) and the --env pairs — never the client's: a login shell's
#   ~/.bashrc or the calling shell's exports do not reach the process (docker exec reference);
# - a relative --workdir is refused: the OCI runtime spec requires an absolute cwd, runc refuses
#   another ("Cwd must be an absolute path", libcontainer/configs/validate), and docker exec
#   reports a failed runtime exec with 126, as for a command that cannot be invoked;
# - with $DOCKER_STAND_IN_DIR (the stand-in keeping containers as NAME.json), a container that does
#   not exist or does not run: the daemon's "No such container: NAME" and "container NAME is not
#   running", which the docker CLI exits 1 with (an error that is no StatusError).
# The container's file system is this machine's, under the directory $DOCKER_STAND_IN_DIR/NAME.root
# names, when it does (an image with /vllm-workspace in it).
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
failed = "OCI runtime exec failed: exec failed: unable to start container process: "
cwd = "/"
if workdir is not None:
    if not workdir.startswith("/"):
        sys.exit(print(failed + "Cwd must be an absolute path: unknown", file=sys.stderr) or 126)
    root = open(state + ".root").read().strip() if state and os.path.exists(state + ".root") else ""
    cwd = root + workdir
    if not os.path.isdir(cwd):
        message = f'chdir to cwd ("{workdir}") set in config.json failed: no such file or directory: unknown'
        sys.exit(print(failed + message, file=sys.stderr) or 126)
path = open(state + ".path").read().strip() if state and os.path.exists(state + ".path") else os.environ["PATH"]
image = {"PATH": path, "HOME": "/root"}
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
  run|rm|inspect) exec {python} {state_keeper} "$@" ;;
  *) echo "the stand-in knows exec, run, rm and inspect" >&2; exit 125 ;;
esac
"""

# `docker run|rm|inspect`: containers as files $DOCKER_STAND_IN_DIR/NAME.json holding what `docker
# inspect` prints of them (the fields cpconsole reads), created by `run` from its flags.
STATE_KEEPER = """
import json, os, sys

command, args = sys.argv[1], sys.argv[2:]
path = os.path.join(os.environ["DOCKER_STAND_IN_DIR"], args[-1] + ".json")
if command == "inspect":
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
    state_dir: Path, name: str, *, running: bool = True, privileged: bool = False, devices: Iterable[str] = ()
) -> None:
    """A container made by hand, as `docker inspect` would show it to the stand-in."""
    config = {"NetworkMode": "host", "Privileged": privileged, "ShmSize": 1024**3, "Binds": []}
    config["Devices"] = [{"PathOnHost": d, "PathInContainer": d, "CgroupPermissions": "rwm"} for d in devices]
    state = {"Name": "/" + name, "State": {"Running": running}, "Config": {"Image": "by-hand"}, "HostConfig": config}
    (state_dir / f"{name}.json").write_text(json.dumps(state))


def install_docker_stand_in(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    docker, keeper, runner = bin_dir / "docker", bin_dir / "docker_state.py", bin_dir / "docker_exec.py"
    keeper.write_text(STATE_KEEPER)
    runner.write_text(EXEC)
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
