#!/usr/bin/env bash
# The whole loop on this machine: installs what is missing, builds, starts a local PostgreSQL with
# its data under .flywheel/, migrates, starts the four services, checks their health and prints
# where everything is. Safe to re-run: services are restarted, data is kept.
# Stop everything with scripts/down.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.flywheel"
bin="$root/build/bin"
pg_port=${FLYWHEEL_PG_PORT:-54320}
mkdir -p "$state/logs" "$state/run"

step() { printf '\n== %s\n' "$*"; }

step "1/7 packages"
bash "$root/scripts/install-deps.sh"
echo "all present"

step "2/7 build"
bash "$root/scripts/build.sh" flywheel flywheel-capture flywheel-clustering flywheel-annotation \
  flywheel-evalset

step "3/7 postgres"
pg_dir="$state/pg"
if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$state" 2>/dev/null; then
  # initdb refuses root and the postgres user cannot reach this checkout (a private parent
  # directory): keep the data in /var/tmp and link it from .flywheel/pg.
  real="/var/tmp/flywheel-pg-$(echo "$root" | md5sum | cut -c1-10)"
  if [ ! -L "$pg_dir" ]; then
    if [ -e "$pg_dir" ] && [ -n "$(ls -A "$pg_dir" 2>/dev/null)" ]; then
      echo "up.sh: $pg_dir holds data but user postgres can no longer reach it; make the" >&2
      echo "       checkout's parent directories searchable (chmod o+x) or move the data away" >&2
      exit 1
    fi
    rm -rf "$pg_dir"
    ln -s "$real" "$pg_dir"
  fi
  echo "note: user postgres cannot reach $root; data lives in $real (linked from .flywheel/pg)"
  pg_dir="$real"
fi
bash "$root/scripts/pg.sh" start "$pg_dir" "$pg_port" 127.0.0.1
db_admin="host=127.0.0.1 port=$pg_port user=postgres dbname=postgres"
database_url="postgresql://postgres@127.0.0.1:$pg_port/flywheel"
if [ "$(psql -tAq "$db_admin" -c "SELECT 1 FROM pg_database WHERE datname = 'flywheel'")" != 1 ]; then
  psql -q "$db_admin" -c "CREATE DATABASE flywheel"
fi
echo "postgres on 127.0.0.1:$pg_port, data in $pg_dir"

step "4/7 migrations"
"$bin/flywheel" migrate --database_url "$database_url"

# A pid file is trusted only if it still names one of our binaries (pids are reused).
ours() { [ -f "$1" ] && [ "$(readlink "/proc/$(cat "$1")/exe" 2>/dev/null)" = "$bin/flywheel-$2" ]; }
stop_service() {
  local pid_file="$state/run/$1.pid"
  ours "$pid_file" "$1" || { rm -f "$pid_file"; return 0; }
  local pid
  pid=$(cat "$pid_file")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pid_file"
}

# The deployment's service key: background workers (clustering's feed follower, annotation's
# queue filler and promotion outbox) act for each project with it.
if [ ! -s "$state/service.key" ]; then
  (umask 077
   "$bin/flywheel" admin create-key --database_url "$database_url" --kind service \
     --scopes read,review,eval --display_name "local services" --quiet >"$state/service.key.tmp")
  mv "$state/service.key.tmp" "$state/service.key"
fi

step "5/7 services"
services=(capture:50051:9461 clustering:50052:9462 annotation:50053:9463 evalset:50054:9464)
for entry in "${services[@]}"; do
  IFS=: read -r name port metrics_port <<<"$entry"
  pid_file="$state/run/$name.pid"
  stop_service "$name"
  rm -f "$state/run/$name.ports"
  extra=()
  # Eval-set exports DPO pairs from capture's preference pairs.
  [ "$name" = evalset ] && extra=(--capture_address 127.0.0.1:50051)
  # Clustering follows capture's flagged feed; annotation fills queues from capture and
  # clustering and promotes into eval-set.
  [ "$name" = clustering ] && extra=(--capture_address 127.0.0.1:50051)
  [ "$name" = annotation ] && extra=(--capture_address 127.0.0.1:50051
    --clustering_address 127.0.0.1:50052 --evalset_address 127.0.0.1:50054)
  FLYWHEEL_DATABASE_URL="$database_url" setsid "$bin/flywheel-$name" \
    --listen "127.0.0.1:$port" --metrics_listen "127.0.0.1:$metrics_port" \
    --port_file "$state/run/$name.ports" --service_key_file "$state/service.key" "${extra[@]}" </dev/null >>"$state/logs/$name.log" 2>&1 &
  echo $! >"$pid_file"
done
for entry in "${services[@]}"; do
  IFS=: read -r name port metrics_port <<<"$entry"
  for _ in $(seq 1 300); do
    [ -f "$state/run/$name.ports" ] && break
    kill -0 "$(cat "$state/run/$name.pid")" 2>/dev/null || break
    sleep 0.1
  done
  if ! "$bin/flywheel" health --address "127.0.0.1:$port" >/dev/null 2>&1; then
    echo "flywheel-$name did not become healthy; last log lines:" >&2
    tail -n 20 "$state/logs/$name.log" >&2
    exit 1
  fi
done

step "6/7 demo project"
projects=$("$bin/flywheel" admin list-projects --database_url "$database_url")
if ! awk -F'\t' '$1 == "demo" { found = 1 } END { exit !found }' <<<"$projects"; then
  "$bin/flywheel" admin create-project --database_url "$database_url" --id demo \
    --display_name "Demo product" >/dev/null
fi
if [ ! -s "$state/demo-secret.key" ] || [ ! -s "$state/demo-public.key" ]; then
  umask 077
  "$bin/flywheel" admin create-key --database_url "$database_url" --project demo --kind secret \
    --scopes ingest,read,review,eval,admin --display_name "local demo (all scopes)" --quiet \
    >"$state/demo-secret.key"
  "$bin/flywheel" admin create-key --database_url "$database_url" --project demo --kind public \
    --display_name "local demo browser key" --quiet >"$state/demo-public.key"
fi
echo "project demo; keys in .flywheel/demo-secret.key and .flywheel/demo-public.key"

if [ "${FLYWHEEL_NO_DEMO:-0}" != 1 ]; then
  step "7/7 demo: a simulated product through the whole loop"
  if ! "$bin/flywheel" demo --key_file "$state/demo-secret.key"; then
    echo "the demo failed; service logs are in .flywheel/logs/" >&2
    exit 1
  fi
fi

printf '\n%-12s %-18s %-9s %-32s %s\n' SERVICE GRPC HEALTH METRICS LOG
for entry in "${services[@]}"; do
  IFS=: read -r name port metrics_port <<<"$entry"
  health=$("$bin/flywheel" health --address "127.0.0.1:$port" 2>/dev/null | awk '{print $2}')
  printf '%-12s %-18s %-9s %-32s %s\n' "$name" "127.0.0.1:$port" "${health:-DOWN}" \
    "http://127.0.0.1:$metrics_port/metrics" ".flywheel/logs/$name.log"
done
cat <<TXT

Flywheel is up. Database: $database_url
Keys of project demo: .flywheel/demo-secret.key (all scopes), .flywheel/demo-public.key (browser)
Try:  build/bin/flywheel themes --key_file .flywheel/demo-secret.key
      build/bin/flywheel evals list --key_file .flywheel/demo-secret.key
      build/bin/flywheel review --key_file .flywheel/demo-secret.key --queue <queue id above> --reviewer me
      build/bin/flywheel demo --key_file .flywheel/demo-secret.key      (again: new traffic)
Stop: bash scripts/down.sh        (FLYWHEEL_NO_DEMO=1 bash scripts/up.sh skips the demo)
TXT
