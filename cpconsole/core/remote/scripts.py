"""The POSIX sh that runs on nodes. Both transports run exactly this text, so the protocol on
disk (run directory, pid file, exit code, manifest) is the same for SSH and local nodes.

Every value is quoted with shlex.quote, or is a number we produced.
"""

from __future__ import annotations

import math
import posixpath
import re
import secrets
import shlex
from collections.abc import Sequence

from . import manifest
from .types import ProcessHandle

# Fields after the `) ` that ends the command name in /proc/PID/stat: $1 is field 3 (state),
# ${20} is field 22 (starttime, clock ticks after boot). Builtins only: a status poll of many
# nodes should cost each node one shell, not a handful of forks.
PROC_FIELDS = "stat=; read -r stat 2>/dev/null < /proc/\"$pid\"/stat; set -f; set -- ${stat##*') '}"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
READ_BOOT = f"read -r boot_now < {BOOT_ID}"
LOG = "log"
LOG_CUT = "log.cut"  # the newest half of what a capped log held when it was emptied
STOPPED = "stopped"  # written before stop's first signal: the end was asked for, it is no failure


# The login user's home; a node without one refuses (an empty $HOME made ~/x mean /x).
HOME = '"${HOME:?is not set on this node, so ~ cannot be resolved; set run_dir to an absolute path}"'


# Enter a directory of cpconsole's (made if missing, mode 700) and refuse one that is not this
# user's alone: its owner must be the login user, and each directory above it the login user's
# or root's and not writable by others unless sticky (like /tmp) — else another user could have
# made it in advance, or swap it for one of theirs, and read the API key or make our writes follow
# a symlink of theirs. Once in it, everything is written by relative name: what was checked is
# what is written to. Exits 94 with the reason, 97 when it cannot be made.
EXIT_NOT_OURS = 94
EXIT_NO_DIR = 97
_OURS = f"""ours() {{
  mkdir -p -- "$1" 2>/dev/null; cd -- "$1" 2>/dev/null || {{ echo "cannot make or enter $1" >&2; return {EXIT_NO_DIR}; }}
  [ -O . ] || {{ echo "$1 belongs to another user: choose a run_dir only you can write" >&2; return {EXIT_NOT_OURS}; }}
  me=$(id -u); d=$(pwd -P)
  while [ "$d" != / ]; do
    d=${{d%/*}}; d=${{d:-/}}
    set -- $(stat -c '%u %a' "$d") || return {EXIT_NOT_OURS}
    [ "$1" = "$me" ] || [ "$1" = 0 ] || {{ echo "$d belongs to another user" >&2; return {EXIT_NOT_OURS}; }}
    m=$((0$2)); [ $((m & 022)) = 0 ] || [ $((m & 01000)) != 0 ] \\
      || {{ echo "$d is writable by others: another user could swap what is in it" >&2; return {EXIT_NOT_OURS}; }}
  done
  chmod 700 .
}}"""


def enter_own(directory: str) -> str:
    """sh that makes `directory` (mode 700) and enters it, or exits 94 / 97 with why (see _OURS)."""
    return f"{_OURS}\nours {shell_path(directory)} || exit $?"


def hand_key(directory: str, file: str) -> str:
    """sh writing stdin (an API key) to `file` in `directory`, readable by its user only."""
    return f"umask 077\n{enter_own(directory)}\ncat > {shlex.quote(file)}"


def shell_path(path: str) -> str:
    """Quote a path for sh, keeping a leading ~ meaning the login user's home."""
    if path == "~":
        return HOME
    if path.startswith("~/"):
        return HOME + "/" + shlex.quote(path[2:])
    return shlex.quote(path)


def join(run_dir: str, name: str) -> str:
    return posixpath.join(run_dir, name)


def _each_process(test: str) -> str:
    """sh running `test` for every process, with $1 its state, $3 its group, $4 its session and
    $f its /proc/PID/stat path. Builtins only."""
    return f"""set +f  # PROC_FIELDS turned globbing off
for f in /proc/[0-9]*/stat; do
  stat=; read -r stat 2>/dev/null < "$f" || continue
  set -f; set -- ${{stat##*') '}}; set +f
  {test}
done"""


def _count_members(pid: str) -> str:
    """sh setting $members to the live processes (zombies hold nothing) of the login user whose
    group or session is `pid`, and $others to those of other users: what a wrapper started lives
    on there after the wrapper itself is gone. Only asked while no other live process has that
    pid: a pid is not reused while a group or session of that id has members."""
    test = (
        f'[ "$1" != Z ] && {{ [ "$3" = {pid} ] || [ "$4" = {pid} ]; }} || continue\n'
        '  if [ -O "${f%/stat}" ]; then members=$((members + 1)); else others=$((others + 1)); fi'
    )
    return f"members=0; others=0\n{_each_process(test)}"


def _signal_members(pid: int, signame: str) -> str:
    """sh signalling process group `pid` and each member of session `pid` that moved to a group of
    its own; succeeds if anything was signalled."""
    stray = (
        f'[ "$1" != Z ] && [ "$4" = {pid} ] && [ "$3" != {pid} ] && [ -O "${{f%/stat}}" ] || continue\n'
        f'  member=${{f#/proc/}}; kill -{signame} "${{member%/stat}}" 2>/dev/null && sent=0'
    )
    return f"""sent=1
kill -{signame} -{pid} 2>/dev/null && sent=0
{_each_process(stray)}
[ "$sent" = 0 ]"""


# The wrapper is the session and group leader (setsid). It records itself, runs launch.sh in
# the foreground and writes its exit code. `trap :` lets a group-wide SIGTERM reach launch.sh
# (a trap with a command is reset in children, unlike an ignored signal) while the wrapper
# survives to record the code. Without its pid file nothing could find the process: then it
# does not start. The log is opened for appending (by spawn), so a truncation leaves no hole.
def wrapper(log_cap: int | None = None, every: float = 10.0) -> str:
    """The wrapper's sh. With `log_cap` (bytes) a keeper beside launch.sh caps the log: every
    `every` seconds, past the cap, the log's newest half goes to LOG_CUT and the log is emptied (the
    tailers follow a truncation; what is written between the copy and the truncation is lost, as
    with logrotate's copytruncate). The keeper sleeps in ticks of at most a second in the
    foreground, a TERM only raising its flag: it ends at its next tick — on the group's SIGTERM at
    once (its sleep gets the signal too), killed by the wrapper before the exit code is recorded
    within a second — and nothing of it outlives the process."""
    keeper = ""
    if log_cap is not None:
        tick = min(1.0, every)
        ticks = max(1, math.ceil(every / tick))
        keeper = f"""( stop=; trap 'stop=1' TERM; n=0
  while [ -z "$stop" ]; do
    sleep {tick:g}; n=$((n + 1))
    [ -z "$stop" ] && [ "$n" -ge {ticks} ] || continue
    n=0
    size=$(wc -c < {LOG}) || continue
    if [ "$size" -gt {int(log_cap)} ]; then
      tail -c {log_cap // 2} {LOG} > {LOG_CUT}.tmp && mv -f {LOG_CUT}.tmp {LOG_CUT} && : > {LOG}
    fi
  done ) > /dev/null 2>&1 &
keeper=$!
"""
    # the keeper says nothing into the log: sh reports a job that a signal ended ("Terminated")
    stop_keeper = 'kill "$keeper" 2>/dev/null; { wait "$keeper"; } 2>/dev/null\n' if log_cap is not None else ""
    return f"""trap : TERM INT HUP
pid=$$
{PROC_FIELDS}
{READ_BOOT}
echo "$$ ${{20}} $boot_now" > pid.tmp && mv pid.tmp pid || exit 95
{keeper}sh ./launch.sh
code=$?
{stop_keeper}echo $code > exitcode.tmp && mv exitcode.tmp exitcode
"""


# spawn's exit codes
SPAWN_RUNNING = 98  # an earlier start still runs (its leader, or what it left in its group)
SPAWN_NO_RUN_DIR = EXIT_NO_DIR  # the run directory or launch.sh could not be written
SPAWN_NOT_OURS = EXIT_NOT_OURS  # the run directory, or one above it, is not this user's alone
SPAWN_NO_PID = 96  # the wrapper never recorded itself (it could not write its pid file)
SPAWN_NO_MANIFEST = 95  # the manifest could not be written: the process was stopped again


_MANIFEST_PRINTF = shlex.quote("%s" + manifest.PID_TAIL + "\\n")  # the backslash-n is printf's: a newline


def spawn(
    run_dir: str, manifest_head: str, wait_steps: int = 500, *, log_cap: int | None = None, log_every: float = 10.0
) -> str:
    """Start launch.sh (read from stdin) detached; print `pid ticks boot_id`.

    `manifest_head` is Manifest.head(); the pid fields (manifest.PID_TAIL) are appended once
    the process exists. Every write is checked: a process whose manifest could not
    be written is killed again rather than left running where nothing would find it.
    """
    return f"""umask 077
{enter_own(run_dir)}
{READ_BOOT}
if [ -f pid ]; then
  read pid ticks boot < pid
  {PROC_FIELDS}
  if [ $# -ge 20 ] && [ "${{20}}" = "$ticks" ] && [ "$1" != Z ]; then
    [ -f exitcode ] || {{ echo "$pid"; exit {SPAWN_RUNNING}; }}
  elif [ "$boot" = "$boot_now" ] && {{ [ $# -lt 20 ] || [ "$1" = Z ]; }}; then
    # the wrapper is gone, what it started may not be: a new start would lose it
    {_count_members('"$pid"')}
    [ "$members" -gt 0 ] && {{ echo "$pid ($members processes of its group)"; exit {SPAWN_RUNNING}; }}
  fi
fi
rm -f pid exitcode {manifest.FILE} {STOPPED} || exit {SPAWN_NO_RUN_DIR}
if [ -f {LOG} ]; then mv -f {LOG} {LOG}.1 || exit {SPAWN_NO_RUN_DIR}; fi
cat > launch.sh && chmod 700 launch.sh || exit {SPAWN_NO_RUN_DIR}
setsid sh -c {shlex.quote(wrapper(log_cap, log_every))} >> {LOG} 2>&1 < /dev/null &
i=0
while [ ! -s pid ] && [ $i -lt {wait_steps} ]; do sleep 0.01; i=$((i+1)); done
[ -s pid ] || exit {SPAWN_NO_PID}
read pid ticks boot < pid
if ! printf {_MANIFEST_PRINTF} {shlex.quote(manifest_head)} "$pid" "$ticks" "$boot" \\
    > {manifest.FILE}.tmp || ! mv {manifest.FILE}.tmp {manifest.FILE}; then
  kill -KILL -"$pid" 2>/dev/null; rm -f {manifest.FILE}.tmp
  exit {SPAWN_NO_MANIFEST}
fi
echo "$pid $ticks $boot"
"""


def process_dirs(base: str) -> str:
    """Print the name of each process directory under a deployment's base that has a manifest."""
    return (
        f"cd {shell_path(base)} 2>/dev/null || exit 0\n"
        'for d in */; do [ -f "$d/manifest.json" ] && printf \'%s\\n\' "${d%/}"; done\ntrue'
    )


def running_among(run_dirs: dict[str, str]) -> str:
    """Print the name of each run directory (name → path) whose process still runs — its pid file
    names a live process with the recorded start time on this boot and no exit code is written,
    or its leader is gone and its group lives on — in one shell for all of them."""
    checks = [READ_BOOT]
    for name, run_dir in run_dirs.items():
        checks.append(f"""( cd {shell_path(run_dir)} 2>/dev/null && [ -f pid ] || exit 0
  read pid ticks boot < pid; [ "$boot" = "$boot_now" ] || exit 0
  {PROC_FIELDS}
  if [ $# -ge 20 ] && [ "$1" != Z ]; then
    [ "${{20}}" = "$ticks" ] && [ ! -f exitcode ] && echo {shlex.quote(name)}
  else
    {_count_members('"$pid"')}
    [ "$members" -gt 0 ] && echo {shlex.quote(name)}
  fi )""")
    return "\n".join(checks) + "\ntrue\n"


def status(run_dir: str) -> str:
    """Print what is known of a run directory, one `key value` per line; `members N` when the
    leader is gone on this boot (N: what lives on in its group and session)."""
    return f"""cd {shell_path(run_dir)} 2>/dev/null || {{ echo missing; exit 0; }}
if [ -f pid ]; then read -r line < pid; echo "pidfile $line"; fi
if [ -f exitcode ]; then read -r code < exitcode; echo "exitcode $code"; fi
if [ -f {STOPPED} ]; then read -r note < {STOPPED}; echo "stopped $note"; fi
{READ_BOOT}
echo "boot $boot_now"
if [ -f pid ]; then
  read pid ticks boot < pid
  {PROC_FIELDS}
  [ $# -ge 20 ] && echo "proc $1 ${{20}}"
  if [ "$boot" = "$boot_now" ] && {{ [ $# -lt 20 ] || [ "$1" = Z ]; }}; then
    {_count_members('"$pid"')}
    echo "members $members"
  fi
fi
true
"""


def _in_container(handle: ProcessHandle, signame: str) -> str:
    """sh that signals the group the process started in its container (docker exec forwards no
    signal); fails when there is no such container, file or group."""
    kill = f'kill -{signame} -"$(cat "$0")"'
    return (
        f"{shlex.join(handle.container_cli)} exec {shlex.quote(handle.container or '')} sh -c {shlex.quote(kill)} "
        f"{shlex.quote(handle.container_pidfile or '')} 2>/dev/null"
    )


def signal(handle: ProcessHandle, signame: str, *, stop_note: str = "") -> str:
    """Signal the process group and session, only if the pid still is the process we started or,
    its leader gone, what is left of its group. Answers sent | gone | recycled | rebooted | failed
    | foreign. A process in a container gets it in there; the docker exec client on the node then
    ends when its process does (signalled first, it would end at once and report an exit while the
    process lives on) — but SIGKILL goes to both. `stop_note` (who asked) is written to the run
    directory first, even when nothing runs any more: the end is then taken as a stop (one that
    follows), or a failure acknowledged (one that came before).

    The pid comes from a file on the node, which anybody who can write there may have edited: a
    live leader is ours only when the login user owns it, it leads its own session (setsid started
    it) and works in this run directory; a leader gone leaves a group of the login user's
    processes only. Anything else is `foreign`, and nothing is signalled."""
    if not re.fullmatch(r"[A-Z0-9]+", signame):
        raise ValueError(f"bad signal name {signame!r}")
    if not manifest.valid_pid(handle.pid):
        raise ValueError(f"{handle.pid!r} is no pid cpconsole started")
    here = _signal_members(handle.pid, signame)
    if handle.container and handle.container_pidfile:
        inside = _in_container(handle, signame)
        joiner = ";" if signame == "KILL" else "||"  # no container: the node's group
        send = f"{{ {inside}; }} {joiner} {{\n{here}\n}}"
    else:
        send = here
    directory = shell_path(handle.run_dir)
    note = (
        f"( cd {directory} && [ -O . ] && printf '%s\\n' {shlex.quote(stop_note)} > {STOPPED} )\n" if stop_note else ""
    )
    return f"""{READ_BOOT}
[ "$boot_now" = {shlex.quote(handle.boot_id)} ] || {{ echo rebooted; exit 0; }}
pid={handle.pid}
{PROC_FIELDS}
leader=
if [ $# -ge 20 ] && [ "$1" != Z ]; then
  [ "${{20}}" = {handle.start_ticks} ] || {{ echo recycled; exit 0; }}
  here=$(cd {directory} 2>/dev/null && pwd -P) && [ -O /proc/$pid ] && [ "$4" = "$pid" ] \\
    && [ "$(readlink /proc/$pid/cwd)" = "$here" ] || {{ echo foreign; exit 0; }}
  leader=alive
else
  {_count_members('"$pid"')}
  [ "$others" = 0 ] || {{ echo foreign; exit 0; }}
fi
{note}if {send}
then echo sent; elif [ -n "$leader" ]; then echo failed; else echo gone; fi
"""


def stat(path: str) -> str:
    """Print `size inode` of a file, or `missing`."""
    return f"stat -c '%s %i' {shell_path(path)} 2>/dev/null || echo missing"


def tail(path: str, offset: int, shown_as: str | None = None) -> str:
    """Follow a file by name from a byte offset; tail's own notices are merged into the stream
    (2>&1) so they arrive exactly where they happened. C locale keeps their wording fixed.
    `shown_as` is the file's name as tail is given it, and so as its notices name it: a spelling
    of the name no log line can guess (see follow_name) keeps lines that merely look like notices
    data."""
    directory, name = posixpath.split(path)
    given = shown_as or name
    return (
        f"cd {shell_path(directory or '.')} || exit 1\nLC_ALL=C exec tail -c +{offset + 1} -F {shlex.quote(given)} 2>&1"
    )


def follow_name(name: str) -> str:
    """`name` spelt with 64 random redundant `./` or `.//` in front: the same file, but a name
    that only this one tail's notices carry."""
    return "".join(secrets.choice(("./", ".//")) for _ in range(64)) + name


OUTPUT_LIMIT = 1 << 20  # what `exec` keeps of a command's output on each node


def capped(argv: Sequence[str], limit: int = OUTPUT_LIMIT) -> str:
    """sh running argv with its stdout and stderr merged (as produced) and cut after `limit`
    bytes: the command then dies of SIGPIPE (exit 141) instead of filling the console's memory.
    Its exit code is kept."""
    command = shlex.join(argv)
    return (
        "exec 3>&1\n"
        f"code=$( {{ {{ {command} 2>&1 3>&- 4>&-; echo $? >&4; }} | head -c {int(limit)} >&3; }} 4>&1 )\n"
        'exit "${code:-1}"'
    )


STATE_FILE_LIMIT = 1 << 20  # a manifest is a few KiB: a node's state file is never read past this


def read(path: str, limit: int = STATE_FILE_LIMIT) -> str:
    """A regular file's first `limit` bytes; fails for anything else (a FIFO would block the
    reader, a device like /dev/zero never end)."""
    p = shell_path(path)
    return f"[ -f {p} ] || {{ echo 'not a regular file' >&2; exit 1; }}\nhead -c {int(limit)} {p}"


def last_lines(path: str, count: int) -> str:
    return f"tail -n {int(count)} {shell_path(path)}"


LOG_WINDOW = 4 << 20  # the last lines are looked for in the last 4 MiB: a log may be many GB


def log_slice(path: str, *, offset: int | None = None, lines: int = 50) -> str:
    """`SIZE START` on one line, then the file's bytes from START up to SIZE: from `offset` (0
    when the file is now shorter: the process restarted), else its last `lines` lines. One stat
    for both, so following from SIZE afterwards repeats and misses nothing."""
    p = shell_path(path)
    if offset is None:
        start = f'start=$((size - {LOG_WINDOW})); [ "$start" -lt 0 ] && start=0'
        last = f" | tail -n {int(lines)}"
    else:
        start, last = f'start={int(offset)}; [ "$size" -lt "$start" ] && start=0', ""
    return (
        f'size=$(stat -c %s {p}) || exit 1\n{start}\necho "$size $start"\n'
        f'dd if={p} iflag=skip_bytes,count_bytes skip="$start" count="$((size - start))" status=none{last}'
    )


def parse_log_slice(stdout: bytes) -> tuple[int, int, bytes]:
    """(size, start, bytes) of a log_slice answer."""
    head, _, data = stdout.partition(b"\n")
    size, start = (int(word) for word in head.split())
    return size, start, data


def size(path: str) -> str:
    return f"stat -c %s {shell_path(path)}"


def write(path: str, mode: int) -> str:
    directory = posixpath.dirname(path) or "."
    tmp = path + ".tmp"
    return (
        f"mkdir -p {shell_path(directory)} && cat > {shell_path(tmp)} && "
        f"chmod {mode:o} {shell_path(tmp)} && mv {shell_path(tmp)} {shell_path(path)}"
    )


def parse_status(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    return fields


# The deployment lock (orchestrate/lock.py): flock on a file in the run directory base, held by
# this shell for as long as its heartbeat can be written — the console reading it went away
# (closed, killed, disconnected), the next write fails and the kernel releases the lock.
LOCK_BEAT_S = 1


def hold_lock(directory: str, holder: str, *, wait: int = 0, cancel_note: str = "") -> str:
    """Take the lock and print `held`, then a heartbeat line a second (`cancel WHO` once another
    operator asked for the holder to stop). Before `held`: `stale HOLDER` when the last holder went
    away without releasing it, `cancelling HOLDER` / `waited HOLDER` when `cancel_note` / `wait`
    were used. Instead of it: `busy HOLDER` or `error WHY`."""
    ask = (
        f"printf '%s\\n' {shlex.quote(cancel_note)} > cancel && echo \"cancelling $holder\"\n  " if cancel_note else ""
    )
    busy = 'echo "busy $holder"; exit 0'
    waiting = f"flock -w {int(wait)} 9 || {{ {busy}; }}" if wait > 0 else busy
    return f"""dir={shell_path(directory)}
{_OURS}
why=$(ours "$dir" 2>&1) && cd "$dir" || {{ echo "error $why"; exit 0; }}
command -v flock > /dev/null || {{ echo "error flock is not installed on this node (util-linux)"; exit 0; }}
exec 9>> lock || {{ echo "error cannot open $dir/lock"; exit 0; }}
if ! flock -n 9; then
  holder=$(cat holder 2>/dev/null)
  {ask}{waiting}
  echo "waited $holder"
fi
if [ -s holder ]; then echo "stale $(cat holder)"; fi  # a release empties it: its holder went away
rm -f cancel
printf '%s\\n' {shlex.quote(holder)} > holder.tmp && mv holder.tmp holder || {{ echo "error cannot write $dir/holder"; exit 0; }}
echo "held $$"
while :; do
  if [ -f cancel ]; then note=$(cat cancel 9>&-); rm -f cancel; echo "cancel $note" || exit 0
  else echo . || exit 0; fi
  sleep {LOCK_BEAT_S} 9>&-  # only this shell holds the lock: when it ends, the lock is free
done
"""


def release_lock(directory: str, holder_pid: int) -> str:
    """Empty the holder file while the lock is still held (the next holder sees a clean release),
    end the holding shell and its heartbeat's sleep, and wait until the lock is free: the next
    change may start at once."""
    d = shell_path(directory)
    pid = int(holder_pid)  # the leader of its own group (a new session: sshd's, or the local transport's)
    return f"cd {d} && : > holder && {{ kill -TERM -{pid} || kill -TERM {pid}; }} 2>/dev/null; flock -w 5 {d}/lock true"
