# Sourced by scripts/run and scripts/test: make .venv with the locked dependencies, once.
# `. scripts/_venv.sh dev` also installs the test and lint tools.
lock=requirements.lock
[ "${1:-}" = "dev" ] && lock=requirements-dev.lock
stamp=".venv/.installed-$(basename "$lock")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$lock"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  touch "$stamp"
fi
