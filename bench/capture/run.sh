#!/usr/bin/env bash
# Capture ingestion benchmark: the one command that reproduces docs/benchmarks.md ("Capture").
#
#   bash bench/capture/run.sh
#
# Builds flywheel, flywheel-capture and capture_bench (into $BUILD_DIR, default <repo>/build),
# starts a throwaway PostgreSQL (scripts/pg.sh: own directory under /var/tmp, own port, fsync and
# synchronous_commit ON, so every acknowledged write is durable as in production), creates two
# databases migrated by `flywheel migrate` (flywheel for the service, rawcopy for the baselines),
# preloads both with the same BASE_TRACES traces (+ signals, sessions; the service's database also
# gets a label per trace and a derived signal per two traces) and VACUUM ANALYZEs them: steady
# state, where the planner knows every table (see "cold start" in docs/benchmarks.md). Then it
# creates a project and an ingest key, starts flywheel-capture and measures, in this one run, on
# the same generated rows (~1 KiB traces, one signal per two traces, sessions of 4 traces):
#
#   batch   raw COPY of the rows capture writes (traces, signals, label_queue, session_activity)
#           with 1 and BATCH_CONCURRENCY psql \copy sessions, one transaction each; capture Ingest
#           (BATCH traces + their signals per RPC) and StreamIngest at BATCH_CONCURRENCY, labeler
#           on (as in production; the time the labeler then needs to empty its queue is reported
#           too) and off. Ratios are against the best COPY.
#   unary   pgbench (rawcopy database, same tables) inserting one equivalent row per transaction
#           (2 trace : 1 signal) at UNARY_CONCURRENCY, and the same plus the label_queue /
#           session_activity writes capture adds; capture CreateTrace/CreateSignal at the same
#           concurrency (closed loop: peak), then open loop at half of that peak (p50/p99 counted
#           from the scheduled send time), and pgbench at half of its own peak for comparison.
#
# Each measurement runs REPS times (2 for the half-peak and --nolabeler runs); the summary gives
# the best, the spread and the ratios. A CHECKPOINT precedes every measurement. Everything is
# stopped and deleted on exit, also on failure (KEEP=1 keeps the work directory and its logs).
# Not a test: nothing is asserted. About 4.5 minutes on 2 cores once built.
#
# Knobs (environment): BUILD_DIR, BENCH_PG_PORT (54399), REPS (3), TRACES (50000), BASE_TRACES
# (100000), BATCH (500), BATCH_CONCURRENCY (4), UNARY_CONCURRENCY (8), UNARY_SECONDS (6),
# UNARY_TRACES (60000), FLYWHEEL_BUILD_JOBS (2), KEEP.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
pg_port=${BENCH_PG_PORT:-54399}
reps=${REPS:-3}
traces=${TRACES:-50000}
base_traces=${BASE_TRACES:-100000}
batch=${BATCH:-500}
batch_c=${BATCH_CONCURRENCY:-4}
unary_c=${UNARY_CONCURRENCY:-8}
unary_s=${UNARY_SECONDS:-6}
unary_traces=${UNARY_TRACES:-60000}

step() { printf '\n== %s   [load average %s]\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }  # floating point without bc

step "build ($build)"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
if ! ninja -C "$build" -t query capture_bench >/dev/null 2>&1; then
  echo "run.sh: $build has no capture_bench target: the top-level CMakeLists.txt needs" >&2
  echo "        add_subdirectory(bench)" >&2
  exit 1
fi
ninja -C "$build" -j "${FLYWHEEL_BUILD_JOBS:-2}" flywheel flywheel-capture capture_bench
bin=$build/bin
bench=$build/bench/capture/capture_bench

# /var/tmp: as root, the postgres user must be able to reach the cluster directory.
work=$(mktemp -d /var/tmp/flywheel-bench-capture.XXXXXX)
chmod 755 "$work"
pg_dir=$work/pg
data=$work/data
logs=$work/logs
mkdir -p "$data" "$logs"
results=$work/results.tsv
: >"$results"
capture_pid=

cleanup() {
  local code=$?
  if [ -n "$capture_pid" ]; then
    kill -TERM "$capture_pid" 2>/dev/null || true
    wait "$capture_pid" 2>/dev/null || true
  fi
  bash "$root/scripts/pg.sh" destroy "$pg_dir" >/dev/null 2>&1 || true
  if [ "${KEEP:-}" = 1 ]; then
    echo "kept $work (logs, results.tsv)"
  else
    rm -rf "$work"
  fi
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "postgres (port $pg_port, fsync on, synchronous_commit on)"
bash "$root/scripts/pg.sh" start "$pg_dir" "$pg_port" 127.0.0.1
admin="host=127.0.0.1 port=$pg_port user=postgres dbname=postgres"
url="postgresql://postgres@127.0.0.1:$pg_port/flywheel"
copy_url="postgresql://postgres@127.0.0.1:$pg_port/rawcopy"
psql -X -q "$admin" -c "CREATE DATABASE flywheel" -c "CREATE DATABASE rawcopy"
"$bin/flywheel" migrate --database_url "$url" >/dev/null
"$bin/flywheel" migrate --database_url "$copy_url" >/dev/null
"$bin/flywheel" admin create-project --database_url "$url" --id bench --display_name bench >/dev/null
key=$("$bin/flywheel" admin create-key --database_url "$url" --project bench --kind secret \
  --scopes ingest,read --display_name bench --quiet)
psql -X -qtA "$admin" -c "SELECT version()" -c "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers', 'max_wal_size', 'wal_level')"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"

copy_script() {  # dir part [tables...]: \copy commands for one part of a copy_files directory
  local dir=$1 part=$2 table
  shift 2
  for table in "${@:-traces signals label_queue session_activity}"; do
    for table in $table; do
      case $table in
        traces) echo "\\copy capture.traces (project_id, trace_id, session_id, user_id, feature_area, model, model_version, prompt_template_id, prompt_version, start_time, end_time, content_sha256, redactions, payload) from '$dir/traces.$part.tsv'" ;;
        signals) echo "\\copy capture.signals (project_id, event_id, trace_id, session_id, user_id, signal_kind, actor, occur_time, value_key, content_sha256, redactions, payload) from '$dir/signals.$part.tsv'" ;;
        label_queue) echo "\\copy capture.label_queue (project_id, trace_id) from '$dir/label_queue.$part.tsv'" ;;
        session_activity) echo "\\copy capture.session_activity (project_id, session_id, last_trace_id, last_activity) from '$dir/session_activity.$part.tsv'" ;;
      esac
    done
  done
}
checkpoint() { psql -X -q "$1" -c CHECKPOINT; }

step "preload $base_traces traces into both databases, ANALYZE"
"$bench" --mode copy_files --traces "$base_traces" --prefix base --project bench \
  --out_dir "$data" >/dev/null
copy_script "$data" 0 "traces signals session_activity" >"$data/base.sql"
for db in "$url" "$copy_url"; do
  psql -X -q -v ON_ERROR_STOP=1 -1 -f "$data/base.sql" "$db"
done
psql -X -q -v ON_ERROR_STOP=1 "$url" \
  -c "INSERT INTO capture.trace_labels (project_id, trace_id, quality_score, flagged,
        rule_set_version, label_time, payload)
      SELECT project_id, trace_id, 0.5, false, 1, now(), '\\x' FROM capture.traces" \
  -c "INSERT INTO capture.derived_signals (project_id, trace_id, signal_kind, occur_time, payload)
      SELECT project_id, trace_id, 34, end_time, '\\x' FROM capture.traces
      WHERE right(trace_id, 1) IN ('0', '2', '4', '6', '8')"
for db in "$url" "$copy_url"; do psql -X -q "$db" -c "VACUUM ANALYZE"; done
rm -f "$data"/*.tsv

start_capture() {  # --labeler | --nolabeler
  rm -f "$work/capture.ports"
  FLYWHEEL_DATABASE_URL="$url" "$bin/flywheel-capture" --listen 127.0.0.1:0 \
    --port_file "$work/capture.ports" --log_level warning "$1" </dev/null \
    >>"$logs/capture.log" 2>&1 &
  capture_pid=$!
  for _ in $(seq 1 300); do
    [ -f "$work/capture.ports" ] && break
    kill -0 "$capture_pid" 2>/dev/null || { tail -n 20 "$logs/capture.log" >&2; exit 1; }
    sleep 0.1
  done
  address="127.0.0.1:$(sed -n 's/^grpc_port=//p' "$work/capture.ports")"
  "$bin/flywheel" health --address "$address" >/dev/null
  echo "flywheel-capture $1 on $address (pid $capture_pid)"
}
stop_capture() {
  kill -TERM "$capture_pid"
  wait "$capture_pid" || true
  capture_pid=
}

record() {  # scenario throughput unit p50 p99 (the repetition $rep is appended)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" "$rep" >>"$results"
}
field() {  # key logfile: a value of the RESULT line
  sed -n 's/^RESULT .*\b'"$1"'=\([^ ]*\).*/\1/p' "$2"
}

# After an ingest run with the labeler on: seconds until the label queue is empty.
drain_seconds() {
  local start
  start=$(now)
  for _ in $(seq 1 1800); do
    [ "$(psql -X -qtA "$url" -c "SELECT count(*) FROM capture.label_queue")" = 0 ] && break
    sleep 0.1
  done
  calc "$(now) - $start"
}

run_capture() {  # scenario labeler(on|off) mode concurrency capture_bench-args...
  local scenario=$1 labeler=$2 mode=$3 c=$4 log
  shift 4
  log="$logs/$scenario.$rep.log"
  checkpoint "$url"
  "$bench" --address "$address" --api_key "$key" --mode "$mode" --concurrency "$c" \
    --prefix "$scenario-$rep" "$@" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  local tput p50 p99 what=traces_per_s unit=traces/s extra=""
  if [ "$mode" = unary ]; then what=rpcs_per_s; unit=rpcs/s; fi
  tput=$(field "$what" "$log"); p50=$(field p50_ms "$log"); p99=$(field p99_ms "$log")
  record "$scenario" "$tput" "$unit" "$p50" "$p99"
  if [ "$labeler" = on ]; then
    local drain
    drain=$(drain_seconds)
    extra=$(printf '; labeler queue empty %.1f s later' "$drain")
    if [ "$mode" != unary ]; then
      record "$scenario+labeled" \
        "$(printf '%.0f' "$(calc "$(field traces "$log") / ($(field seconds "$log") + $drain)")")" \
        traces/s "" ""
    fi
  fi
  printf '  %-22s %8s %-8s p50 %8s ms  p99 %8s ms  (%s items/s)%s\n' "$scenario#$rep" "$tput" \
    "$unit" "$p50" "$p99" "$(field items_per_s "$log")" "$extra"
}

run_copy() {  # scenario parts: COPY this rep's rows with `parts` concurrent psql sessions
  local scenario=$1 parts=$2 dir=$data/$1.$rep start elapsed tput p pids=()
  mkdir -p "$dir"
  "$bench" --mode copy_files --traces "$traces" --prefix "$scenario-$rep" --project bench \
    --out_dir "$dir" --copy_parts "$batch_c" >/dev/null
  if [ "$parts" = 1 ]; then
    for p in $(seq 0 $((batch_c - 1))); do copy_script "$dir" "$p"; done >"$dir/copy.0.sql"
  else
    for p in $(seq 0 $((batch_c - 1))); do copy_script "$dir" "$p" >"$dir/copy.$p.sql"; done
  fi
  checkpoint "$copy_url"
  start=$(now)
  for p in $(seq 0 $((parts - 1))); do
    psql -X -q -v ON_ERROR_STOP=1 -1 -f "$dir/copy.$p.sql" "$copy_url" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  elapsed=$(calc "$(now) - $start")
  rm -rf "$dir"
  tput=$(printf '%.0f' "$(calc "$traces / $elapsed")")
  record "$scenario" "$tput" traces/s "" ""
  printf '  %-22s %8s traces/s (%d traces + %d signals + label_queue + session rows in %.2f s)\n' \
    "$scenario#$rep" "$tput" "$traces" "$((traces / 2))" "$elapsed"
}

run_pgbench() {  # scenario rate(0 = as fast as possible) script@weight...
  local scenario=$1 rate=$2 log args=()
  shift 2
  for script in "$@"; do args+=(-f "$data/$script"); done
  [ "$rate" != 0 ] && args+=(-R "$rate")
  log="$logs/$scenario.$rep.log"
  rm -f "$work"/pgb.*
  checkpoint "$copy_url"
  (cd "$work" && pgbench -n -M prepared -c "$unary_c" -j "$unary_c" -T "$unary_s" -l \
    --log-prefix=pgb "${args[@]}" -h 127.0.0.1 -p "$pg_port" -U postgres rawcopy) \
    >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  local tput p50 p99
  tput=$(printf '%.0f' "$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$log" | head -n 1)")
  # Per-transaction log: field 3 is the latency in microseconds (with -R: from the schedule).
  read -r p50 p99 < <(cat "$work"/pgb.* | awk '{print $3}' | sort -n | awk '
    { v[NR] = $1 } END { i50 = int(NR * 0.50) + 1; i99 = int(NR * 0.99) + 1; if (i99 > NR) i99 = NR
      printf "%.2f %.2f\n", v[i50] / 1000, v[i99] / 1000 }')
  rm -f "$work"/pgb.*
  record "$scenario" "$tput" tx/s "$p50" "$p99"
  printf '  %-22s %8s tx/s     p50 %8s ms  p99 %8s ms\n' "$scenario#$rep" "$tput" "$p50" "$p99"
}

best() {  # scenario [column]: the best throughput, or that run's value of another column
  awk -F'\t' -v s="$1" -v c="${2:-2}" '$1 == s && $2 + 0 > b { b = $2 + 0; v = $c } END { print v }' "$results"
}

# pgbench scripts (one equivalent row per transaction) come with every copy_files directory.
"$bench" --mode copy_files --traces 4 --prefix pgb --project bench --out_dir "$data" >/dev/null
rm -f "$data"/*.tsv

step "batch: raw COPY vs capture Ingest / StreamIngest (labeler on), $traces traces x $reps"
start_capture --labeler
for rep in $(seq 1 "$reps"); do
  run_copy copy_1 1
  run_copy "copy_$batch_c" "$batch_c"
  run_capture ingest on batch "$batch_c" --traces "$traces" --batch "$batch"
  run_capture stream on stream "$batch_c" --traces "$traces" --batch "$batch"
done

step "unary: pgbench 1-row transactions vs capture CreateTrace/CreateSignal, c=$unary_c, ${unary_s}s x $reps"
for rep in $(seq 1 "$reps"); do
  run_pgbench pgbench_row 0 pgbench_trace.sql@2 pgbench_signal.sql@1
  run_pgbench pgbench_tx 0 pgbench_trace_tx.sql@2 pgbench_signal_tx.sql@1
  run_capture unary on unary "$unary_c" --traces "$unary_traces" --duration "${unary_s}s"
done
half=$(( $(printf '%.0f' "$(best unary)") / 2 ))
pg_half=$(( $(printf '%.0f' "$(best pgbench_row)") / 2 ))
for rep in 1 2; do
  run_capture unary_half on unary "$unary_c" --traces "$unary_traces" --duration "${unary_s}s" \
    --rate "$half"
  run_pgbench pgbench_row_half "$pg_half" pgbench_trace.sql@2 pgbench_signal.sql@1
done
stop_capture

step "batch with --nolabeler (the ingest path alone), $traces traces x 2"
start_capture --nolabeler
for rep in 1 2; do
  run_capture ingest_nolabeler off batch "$batch_c" --traces "$traces" --batch "$batch"
  run_capture stream_nolabeler off stream "$batch_c" --traces "$traces" --batch "$batch"
done
stop_capture

# ------------------------------------------------------------------------------------------------
step "summary: best of the runs; spread = min..max of the runs"
spread() {
  awk -F'\t' -v s="$1" -v c="${2:-2}" '$1 == s { n++; v = $c + 0; if (n == 1 || v < lo) lo = v; if (v > hi) hi = v }
    END { if (c == 2) printf "%.0f..%.0f", lo, hi; else printf "%.2f..%.2f", lo, hi }' "$results"
}
copy_best=$(awk -F'\t' '$1 ~ /^copy_/ && $2 + 0 > b { b = $2 + 0 } END { print b }' "$results")
pg_best=$(best pgbench_row)
# Ratio of each repetition to the baseline measured in the same repetition: min..max.
rep_ratios() {  # scenario baseline-regex
  awk -F'\t' -v s="$1" -v b="$2" '
    $1 ~ "^(" b ")$" && $2 + 0 > base[$6] { base[$6] = $2 + 0 }
    $1 == s { v[$6] = $2 + 0 }
    END { for (r in v) if (base[r] > 0) { x = v[r] / base[r]; n++
            if (n == 1 || x < lo) lo = x; if (x > hi) hi = x }
          if (n) printf "%.2f..%.2f", lo, hi; else printf "-" }' "$results"
}
row() {  # label scenario baseline baseline-regex goal
  local tput unit p50 p99 ratio=- per_rep=-
  tput=$(best "$2"); unit=$(best "$2" 3); p50=$(best "$2" 4); p99=$(best "$2" 5)
  [ -n "$3" ] && ratio=$(printf '%.2fx' "$(calc "$tput / $3")")
  [ -n "$4" ] && per_rep=$(rep_ratios "$2" "$4")
  printf '%-46s %7s %-9s %-13s %7s %7s %6s %-10s  %s\n' "$1" "$tput" "$unit" "$(spread "$2")" \
    "${p50:--}" "${p99:--}" "$ratio" "$per_rep" "$5"
}
printf '%-46s %7s %-9s %-13s %7s %7s %6s %-10s  %s\n' scenario best unit spread p50_ms p99_ms \
  ratio per_rep goal
copies="copy_1|copy_$batch_c"
row "raw COPY, 1 session" copy_1 "" "" ""
row "raw COPY, $batch_c sessions" "copy_$batch_c" "" "" "baseline: best COPY"
row "capture Ingest, $batch traces/RPC, c=$batch_c" ingest "$copy_best" "$copies" \
  ">= 0.7x, >= 20000/s"
row "capture StreamIngest, $batch traces/msg, c=$batch_c" stream "$copy_best" "$copies" \
  ">= 0.7x, >= 20000/s"
row "  Ingest until labeled (queue empty)" ingest+labeled "$copy_best" "$copies" ""
row "  StreamIngest until labeled (queue empty)" stream+labeled "$copy_best" "$copies" ""
row "capture Ingest, --nolabeler" ingest_nolabeler "$copy_best" "" ""
row "capture StreamIngest, --nolabeler" stream_nolabeler "$copy_best" "" ""
row "pgbench 1-row INSERT tx (2 trace:1 signal), c=$unary_c" pgbench_row "" "" "baseline"
row "pgbench same + label_queue/session rows" pgbench_tx "$pg_best" pgbench_row ""
row "capture unary Create*, c=$unary_c (peak)" unary "$pg_best" pgbench_row ">= 0.6x"
row "capture unary at half peak ($half/s)" unary_half "" "" "p99 <= 5 ms"
row "pgbench 1-row INSERT at half its peak ($pg_half/s)" pgbench_row_half "" "" ""
echo
echo "p99 over the half-peak runs: capture $(spread unary_half 5) ms, pgbench $(spread pgbench_row_half 5) ms"
echo "ratio: best against the best baseline (COPY: $copy_best traces/s of the same rows into the"
echo "same tables; pgbench_row: $pg_best tx/s at the same concurrency, fsync on). per_rep: each"
echo "repetition against the baseline of the same repetition (min..max; the --nolabeler runs come"
echo "after the COPY runs, so they only have the overall ratio)."
