#!/usr/bin/env bash
# Start a throwaway PostgreSQL server (Debian's `postgresql` package) for the history store's tests and
# print its URL. Usage: url=$(bash .ci/postgres.sh [PORT]). Stop it with: pg_ctl -D <dir>/data stop
# (the data folder is printed on stderr). Listens on 127.0.0.1 only, trust authentication: tests only.
set -euo pipefail
port="${1:-55432}"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2
  else
    echo "PostgreSQL is not installed (apt-get install postgresql)" >&2
    exit 1
  fi
fi
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
dir="$(mktemp -d /tmp/bench-pg.XXXXXX)"
as_server=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$dir"
  as_server=(runuser -u postgres --)
fi
"${as_server[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
"${as_server[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
echo "PostgreSQL ${bin%/bin} running on 127.0.0.1:$port, data in $dir/data" >&2
echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
