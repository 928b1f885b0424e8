"""Stand-ins for programs these machines do not have."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

# `docker exec [--env K=V]... [--workdir D] CONTAINER CMD...` runs CMD here, as docker exec runs it
# inside the container: out of the client's process group (a signal to the client does not reach
# it, as with docker), the client waiting for its exit code.
# A file $DOCKER_STAND_IN_DIR/NAME.path holds the PATH inside that container (an image without some tool).
DOCKER = """#!/bin/sh
case "$1" in
  exec)
    run_apart=$(command -v setsid)  # the stand-in's own, whatever the container's PATH
    shift
    while [ $# -gt 0 ]; do
      case "$1" in
        --env) export "$2"; shift 2 ;;
        --workdir) cd "$2" || exit 126; shift 2 ;;
        *) break ;;
      esac
    done
    [ -n "$DOCKER_STAND_IN_LOG" ] && echo "$1" >> "$DOCKER_STAND_IN_LOG"
    [ -f "$DOCKER_STAND_IN_DIR/$1.path" ] && PATH=$(cat "$DOCKER_STAND_IN_DIR/$1.path")
    shift
    "$run_apart" -w "$@" &
    wait $! ;;
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
    docker, keeper = bin_dir / "docker", bin_dir / "docker_state.py"
    keeper.write_text(STATE_KEEPER)
    docker.write_text(
        DOCKER.replace("{python}", shlex.quote(sys.executable)).replace("{state_keeper}", shlex.quote(str(keeper)))
    )
    docker.chmod(0o755)
    bin_dir.chmod(0o755)
    return docker
