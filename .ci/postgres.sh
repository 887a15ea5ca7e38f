# Start a throw-away PostgreSQL server for the ledger tests and export its URL.
# Sourced by .ci/run (and usable by hand: `source .ci/postgres.sh`): Debian's `postgresql`
# package, one cluster in a temporary folder, listening on 127.0.0.1 only, trust auth for the
# local test user; stopped when the calling shell exits. Exports PRIVSYNTH_TEST_POSTGRES_URL,
# which makes the tests marked `postgres` run (and fail, never skip, if the server is gone).
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PG_DIR=$(mktemp -d /tmp/privsynth-postgres.XXXXXX)
PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off" start >/dev/null
# (One EXIT trap per shell: a later step that needs its own should call stop_postgres in it.)
stop_postgres() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; }
trap stop_postgres EXIT
as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres privsynth_test
export PRIVSYNTH_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$PG_PORT/privsynth_test"
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') for the ledger tests at $PRIVSYNTH_TEST_POSTGRES_URL"
