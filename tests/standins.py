"""Stand-ins for programs these machines do not have."""

from __future__ import annotations

from pathlib import Path

# `docker exec [--env K=V]... [--workdir D] CONTAINER CMD...` runs CMD here, as docker exec runs it
# inside the container: out of the client's process group (a signal to the client does not reach
# it, as with docker), the client waiting for its exit code; `docker inspect --format F NAME` prints the file $DOCKER_STAND_IN_DIR/NAME
# (what the format would print: "true false /dev/davinci0 …"), or fails as for a missing container.
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
  inspect)
    name=$4
    [ -f "$DOCKER_STAND_IN_DIR/$name" ] || { echo "Error: No such object: $name" >&2; exit 1; }
    cat "$DOCKER_STAND_IN_DIR/$name" ;;
  *) echo "the stand-in knows exec and inspect" >&2; exit 125 ;;
esac
"""


def install_docker_stand_in(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(DOCKER)
    docker.chmod(0o755)
    bin_dir.chmod(0o755)
    return docker
