#!/usr/bin/env bash
# Throwaway / local PostgreSQL clusters for development and tests.
#
#   scripts/pg.sh start DIR PORT [LISTEN] [--fast]   init (once) and start a cluster in DIR
#   scripts/pg.sh stop DIR                           stop it (fast shutdown)
#   scripts/pg.sh restart DIR                        restart it (used by failure tests)
#   scripts/pg.sh destroy DIR                        stop and delete DIR
#
# The cluster lives entirely in DIR (data in DIR/data, unix socket in DIR, log in DIR/postgres.log),
# trusts local connections as user "postgres", and listens on LISTEN (default: unix socket only).
# initdb and pg_ctl refuse to run as root, so as root they run as the "postgres" user, which must
# be able to reach DIR. --fast turns off fsync (tests only: a machine crash would lose data).
set -euo pipefail

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] || { echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
  echo "$dir"
}

as_pg() {
  # From / : initdb and pg_ctl change back to the caller's directory, which postgres may not reach.
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,12p' "$0" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin=$(pg_bin)

case "$cmd" in
  start)
    port=${3:?port}
    listen=${4:-}
    fast=${5:-}
    owner=$(stat -c %U "$dir")
    if [ "$owner" != "$(id -un)" ] && [ "$owner" != postgres ]; then
      echo "pg.sh: $dir belongs to $owner; refusing to use it" >&2
      exit 1
    fi
    if [ "$(id -u)" = 0 ]; then
      chown postgres:postgres "$dir"
      if ! runuser -u postgres -- test -w "$dir"; then
        echo "pg.sh: user postgres cannot reach $dir (a parent directory is not searchable)" >&2
        exit 1
      fi
    fi
    chmod 700 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      exit 0
    fi
    opts="-p $port -k '$dir' -c listen_addresses='$listen' -c max_connections=300"
    if [ "$fast" = "--fast" ]; then
      opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -o "$opts" start >/dev/null \
      || { tail -n 20 "$dir/postgres.log" >&2; exit 1; }
    ;;
  stop)
    if [ -f "$dir/data/PG_VERSION" ] && as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    fi
    ;;
  restart)
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 restart >/dev/null
    ;;
  destroy)
    if [ -f "$dir/data/PG_VERSION" ] && as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    sed -n '2,12p' "$0" >&2
    exit 2
    ;;
esac
