# Sourced by scripts/run and scripts/test from the repository root: make .venv with the locked
# dependencies, once. `. scripts/_venv.sh dev` also installs the test and lint tools.
lock=requirements.lock
[ "${1:-}" = "dev" ] && lock=requirements-dev.lock

# Whether the install recorded by stamp $1 is newer than each of the files after it and pyproject.toml.
_installed() {
  local stamp=$1 file
  shift
  [ -f "$stamp" ] || return 1
  for file in "$@" pyproject.toml; do
    if [ "$file" -nt "$stamp" ]; then return 1; fi
  done
}

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# The dev install holds everything the runtime one does (the dev lock pins the same versions and more).
if ! _installed ".venv/.installed-$(basename "$lock")" "$lock" \
  && ! { [ "$lock" = requirements.lock ] \
    && _installed .venv/.installed-requirements-dev.lock requirements-dev.lock requirements.lock; }; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$lock"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  touch ".venv/.installed-$(basename "$lock")"
fi
