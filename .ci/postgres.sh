#!/usr/bin/env bash
# A throwaway PostgreSQL server (Debian's `postgresql` package) for the history store's tests.
#   url=$(bash .ci/postgres.sh start DIR)   # a fresh cluster in DIR on a free port of 127.0.0.1; prints its URL
#   bash .ci/postgres.sh stop DIR
# A cluster this script made earlier in DIR (marked by DIR/.bench-throwaway) is stopped and replaced;
# any other DIR/data is left alone and refused.
# Trust authentication on the loopback address only: for tests, never for data anyone keeps.
set -euo pipefail
action="${1:?usage: postgres.sh start|stop DIR}"
dir="${2:?usage: postgres.sh start|stop DIR}"
as_server=()
if [ "$(id -u)" = 0 ]; then
  as_server=(runuser -u postgres --)
fi
bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

if [ "$action" = stop ]; then
  if [ ! -e "$dir/data/postmaster.pid" ]; then
    echo "no PostgreSQL server runs in $dir/data: nothing to stop" >&2
    exit 0
  fi
  "${as_server[@]}" "$(bin_dir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  exit 0
fi
if [ -z "$(bin_dir)" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2
  else
    echo "PostgreSQL is not installed (apt-get install postgresql)" >&2
    exit 1
  fi
fi
bin="$(bin_dir)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
if [ -e "$dir/data" ]; then
  if [ ! -e "$dir/.bench-throwaway" ]; then
    echo "$dir/data exists and is not a throwaway cluster this script made: choose another DIR" >&2
    exit 1
  fi
  "${as_server[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir/data"
fi
mkdir -p "$dir"
touch "$dir/.bench-throwaway"
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$dir"
fi
"${as_server[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
"${as_server[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
echo "PostgreSQL ${bin%/bin} on 127.0.0.1:$port, data in $dir/data" >&2
echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
