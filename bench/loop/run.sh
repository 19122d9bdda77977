#!/usr/bin/env bash
# Loop freshness benchmark: the one command that reproduces docs/benchmarks.md ("Loop freshness").
#
#   bash bench/loop/run.sh
#
# Builds the binaries (into $BUILD_DIR, default <repo>/build), starts a throwaway PostgreSQL
# (scripts/pg.sh, own directory under /var/tmp, port $BENCH_PG_PORT, fsync on), migrates, creates a
# project, a secret key and a service key, starts the four services as scripts/up.sh does (feed
# poll and queue fill intervals at their defaults unless overridden below), then runs loop_bench:
# warm-up traffic and one re-clustering, a queue fed by the "fabricated citation" theme group,
# and SECONDS of probes (a failing answer + a thumbs-down every PROBE_INTERVAL) on top of
# BACKGROUND_RATE traces/s of simulated traffic. Prints p50/p95 freshness (thumbs-down
# acknowledged -> item enqueued) and the raw INSERT+NOTIFY->LISTEN floor measured in the same run.
# Everything is stopped and deleted on exit (KEEP=1 keeps logs). Not a test: nothing is asserted.
#
# Knobs: BUILD_DIR, BENCH_PG_PORT (54396), SECONDS_ (60s), PROBE_INTERVAL (500ms),
# BACKGROUND_RATE (100), FOLLOW_POLL (clustering --follow_poll_interval, default of the binary),
# FILL_INTERVAL (annotation --fill_interval, default of the binary), KEEP.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
pg_port=${BENCH_PG_PORT:-54396}

step() { printf '\n== %s   [load average %s]\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)"; }

step "build ($build)"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
ninja -C "$build" -j "${FLYWHEEL_BUILD_JOBS:-2}" flywheel flywheel-capture flywheel-clustering \
  flywheel-annotation flywheel-evalset loop_bench
bin=$build/bin

work=$(mktemp -d /var/tmp/flywheel-bench-loop.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  local code=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  bash "$root/scripts/pg.sh" destroy "$work/pg" >/dev/null 2>&1 || true
  if [ "${KEEP:-}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "postgres (port $pg_port)"
bash "$root/scripts/pg.sh" start "$work/pg" "$pg_port" 127.0.0.1
admin="host=127.0.0.1 port=$pg_port user=postgres dbname=postgres"
url="postgresql://postgres@127.0.0.1:$pg_port/flywheel"
psql -X -q "$admin" -c "CREATE DATABASE flywheel"
"$bin/flywheel" migrate --database_url "$url" >/dev/null
"$bin/flywheel" admin create-project --database_url "$url" --id bench >/dev/null
key=$("$bin/flywheel" admin create-key --database_url "$url" --project bench --kind secret \
  --scopes ingest,read,review,eval,admin --quiet)
"$bin/flywheel" admin create-key --database_url "$url" --kind service --scopes read,review,eval \
  --quiet >"$work/service.key"

start() {  # name, extra flags...
  local name=$1
  shift
  FLYWHEEL_DATABASE_URL="$url" "$bin/flywheel-$name" --listen 127.0.0.1:0 \
    --port_file "$work/$name.ports" --service_key_file "$work/service.key" --log_level "${LOG_LEVEL:-warning}" \
    "$@" </dev/null >>"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    [ -f "$work/$name.ports" ] && break
    sleep 0.1
  done
  [ -f "$work/$name.ports" ] || { tail -n 20 "$work/$name.log" >&2; exit 1; }
  echo "127.0.0.1:$(sed -n 's/^grpc_port=//p' "$work/$name.ports")"
}
step "services"
capture=$(start capture)
evalset=$(start evalset --capture_address "$capture")
clustering_flags=(--capture_address "$capture")
[ -n "${FOLLOW_POLL:-}" ] && clustering_flags+=(--follow_poll_interval "$FOLLOW_POLL")
clustering=$(start clustering "${clustering_flags[@]}")
annotation_flags=(--capture_address "$capture" --clustering_address "$clustering"
  --evalset_address "$evalset")
[ -n "${FILL_INTERVAL:-}" ] && annotation_flags+=(--fill_interval "$FILL_INTERVAL")
annotation=$(start annotation "${annotation_flags[@]}")
echo "capture $capture, clustering $clustering, annotation $annotation, evalset $evalset"

step "loop_bench"
"$build/bench/loop/loop_bench" --capture_address "$capture" --clustering_address "$clustering" \
  --annotation_address "$annotation" --key "$key" --database_url "$url" \
  --seconds "${SECONDS_:-60s}" --probe_interval "${PROBE_INTERVAL:-500ms}" \
  --background_rate "${BACKGROUND_RATE:-100}"
step "done"
