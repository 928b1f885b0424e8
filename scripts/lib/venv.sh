# Sourced by scripts/demo, scripts/test and scripts/test-vllm: make .venv exactly as uv.lock says.
#
# Why uv and its lock: one file pins every package of the whole set (the test extra included) with
# hashes for every platform, `uv sync --locked` refuses a lock that no longer matches pyproject.toml,
# and it installs in about a second from its cache — a dependency's new release changes nothing here
# until a commit of ours refreshes the lock (scripts/lock). pyproject.toml keeps its ranges for
# people who `pip install` the package.
#
# uv itself comes from PyPI at a pinned version into .tools/ (git-ignored), so no machine needs it
# beforehand. CPCONSOLE_DEPS=newest bypasses the lock: the newest releases inside pyproject.toml's
# ranges, as a plain `pip install` would get them (to see early what the next lock refresh brings).
UV_VERSION=0.13.10

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "cpconsole needs Python >= 3.11" >&2; exit 1; }

uv_bin=.tools/uv-$UV_VERSION/bin/uv
if [ ! -x "$uv_bin" ]; then
  "$PYTHON" -m pip install -qq --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
    --target ".tools/uv-$UV_VERSION" "uv==$UV_VERSION"
fi
export UV_PYTHON_DOWNLOADS=never   # use the machine's Python, never fetch one

# make_venv [EXTRA...]: .venv with cpconsole (editable) and the named extras, nothing else.
make_venv() {
  local extras=()
  for extra in "$@"; do extras+=(--extra "$extra"); done
  if [ "${CPCONSOLE_DEPS:-locked}" = newest ]; then
    local spec=.
    [ $# -gt 0 ] && spec=".[$(IFS=,; echo "$*")]"
    "$uv_bin" venv -q --allow-existing --python "$PYTHON" .venv
    "$uv_bin" pip install -q --python .venv/bin/python --upgrade -e "$spec"
  else
    "$uv_bin" sync -q --locked --python "$PYTHON" "${extras[@]}"
  fi
}
