#!/usr/bin/env bash
# CI services for the test suite (run as root by .ci/run when CI=true):
#   - PostgreSQL: a cluster on 127.0.0.1:${CFVIEWER_PG_PORT:-54329} with database/user "cfviewer";
#     writes `export CFVIEWER_TEST_PG_URL=...` into .ci/services.env (gitignored);
#   - Debian's chromium, for the browser tests.
# Idempotent (a second run reuses the cluster), quiet, and never fails the CI: whatever cannot be
# installed or started is reported on stderr and its tests skip.
set -u
cd "$(dirname "$0")/.."
ENV_FILE=.ci/services.env
PORT="${CFVIEWER_PG_PORT:-54329}"
PGDATA_DIR="${CFVIEWER_PGDATA:-/var/tmp/cfviewer-pg}"
PW=cfviewer
log() { echo "ci/services: $*" >&2; }

have_apt() { command -v apt-get >/dev/null 2>&1; }
apt_updated=0
apt_install() {  # apt_install PACKAGE...; quiet; returns non-zero on failure
  have_apt || return 1
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}

start_postgres() {
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  if [ -z "$bindir" ]; then
    apt_install postgresql || { log "PostgreSQL could not be installed; PostgreSQL tests will skip"; return 1; }
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  fi
  [ -n "$bindir" ] || { log "no PostgreSQL binaries found"; return 1; }
  id postgres >/dev/null 2>&1 || useradd -r -m postgres >/dev/null 2>&1 || true
  if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
    mkdir -p "$PGDATA_DIR" && chown postgres "$PGDATA_DIR" && chmod 700 "$PGDATA_DIR"
    su postgres -s /bin/sh -c "$bindir/initdb -D '$PGDATA_DIR' -A trust -U postgres" >/dev/null 2>&1 \
      || { log "initdb failed"; return 1; }
  fi
  if ! su postgres -s /bin/sh -c "$bindir/pg_ctl -D '$PGDATA_DIR' status" >/dev/null 2>&1; then
    mkdir -p /var/run/postgresql && chown postgres /var/run/postgresql
    su postgres -s /bin/sh -c "$bindir/pg_ctl -D '$PGDATA_DIR' -l '$PGDATA_DIR/server.log' -w -t 60 \
      -o \"-c listen_addresses=127.0.0.1 -p $PORT -k /var/run/postgresql -c max_connections=100\" start" \
      >/dev/null 2>&1 || { log "PostgreSQL did not start (see $PGDATA_DIR/server.log)"; return 1; }
  fi
  local psql="$bindir/psql -h 127.0.0.1 -p $PORT -U postgres -d postgres -qtA"
  $psql -c "SELECT 1 FROM pg_roles WHERE rolname='cfviewer'" | grep -q 1 \
    || $psql -c "CREATE ROLE cfviewer LOGIN PASSWORD '$PW'" >/dev/null
  $psql -c "SELECT 1 FROM pg_database WHERE datname='cfviewer'" | grep -q 1 \
    || $psql -c "CREATE DATABASE cfviewer OWNER cfviewer" >/dev/null
  echo "export CFVIEWER_TEST_PG_URL=postgresql+psycopg://cfviewer:$PW@127.0.0.1:$PORT/cfviewer" > "$ENV_FILE"
  log "PostgreSQL ready on 127.0.0.1:$PORT (CFVIEWER_TEST_PG_URL in $ENV_FILE)"
}

install_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    return 0
  fi
  apt_install chromium || { log "chromium could not be installed; browser tests will skip"; return 1; }
}

status=0
start_postgres || status=1
install_chromium || status=1
exit $status
