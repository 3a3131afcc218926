# Sourced by scripts/test and .ci/run from the repository root: PostgreSQL's server programs for the storage
# tests, which start a throwaway server of their own (tests/postgres.py; nothing is configured system-wide and no
# server is left running). Found as tests/postgres.py finds them: $ENCORE_PG_BIN, Debian's
# /usr/lib/postgresql/<version>/bin, or initdb on the PATH.
_have_postgres() {
  if [ -n "${ENCORE_PG_BIN:-}" ]; then [ -x "$ENCORE_PG_BIN/initdb" ]; return; fi
  if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then return 0; fi
  command -v initdb >/dev/null 2>&1
}

if ! _have_postgres; then
  if [ -n "${ENCORE_PG_BIN:-}" ]; then
    echo "note: ENCORE_PG_BIN=$ENCORE_PG_BIN holds no initdb: the PostgreSQL tests are skipped." >&2
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    # As root on Debian or Ubuntu: Debian's packages, without the cluster (and server) they would set up and start.
    echo "installing PostgreSQL (Debian's postgresql package) for the storage tests..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
    sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
      /etc/postgresql-common/createcluster.conf
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  else
    echo "note: PostgreSQL is not installed, so the PostgreSQL half of the storage tests is skipped." >&2
    echo "      Install it with: sudo apt-get install postgresql   (Debian, Ubuntu; or brew install postgresql@15)" >&2
    echo "      or set ENCORE_PG_BIN to the directory that holds initdb, pg_ctl and postgres." >&2
  fi
fi
