#!/usr/bin/env bash
# Annotation queue benchmark: the one command that reproduces docs/benchmarks.md ("Annotation
# queue").
#
#   bash bench/annotation/run.sh
#
# Builds flywheel, flywheel-annotation and annotation_bench (into $BUILD_DIR, default
# <repo>/build), starts a throwaway PostgreSQL (scripts/pg.sh: own directory under /var/tmp, own
# port, fsync and synchronous_commit ON), migrates it with `flywheel migrate`, creates a project
# with an admin and a review key, starts flywheel-annotation (no upstream services: claims and
# submissions need none) and creates one MANUAL_ONLY queue per concurrency level (one reviewer
# per item, a 3-field rubric). Each queue is loaded with ITEMS PENDING items by COPY into
# review.items (annotation_bench --mode copy_file: ~1.6 KiB trace snapshots); enqueueing is not
# what is measured. The raw baseline gets a copy of exactly these rows: raw.items (all queues,
# same columns and bytes, the same partial claim index) and raw.annotations (same columns and
# indexes as review.annotations). Then, for each level C in CONCURRENCY, in this one run:
#
#   raw      pgbench, C clients, BENCH_SECONDS: one transaction claims the next PENDING item of queue
#            q<C> in the service's claim order with FOR UPDATE SKIP LOCKED, marks it LEASED and
#            returns its snapshot; a second transaction marks it DONE and inserts an annotation
#            row. Throughput = items DONE in the table / BENCH_SECONDS; latency = pgbench's
#            per-script latency (claim + submit).
#   service  annotation_bench: C reviewers (one thread and connection each) looping ClaimItem +
#            SubmitAnnotation over gRPC for BENCH_SECONDS after a 1 s warm-up. Throughput = pairs / s;
#            claim and pair latency p50 / p99.
#
# CPU per pair (user + system, from /proc and getrusage, over all pairs of a run, warm-up
# included) is reported for Postgres (postmaster, its reaped and live children), the service, and
# the load clients. A CHECKPOINT precedes every measurement. Everything is stopped and deleted on exit, also on
# failure (KEEP=1 keeps the work directory and its logs). Not a test: nothing is asserted.
#
# Knobs (environment): BUILD_DIR, BENCH_PG_PORT (54398), ITEMS (40000 per queue), BENCH_SECONDS (10),
# CONCURRENCY ("8 32 64"), DB_POOL (16: flywheel-annotation --db_pool_size), PGBENCH_JOBS (2),
# FLYWHEEL_BUILD_JOBS (2), KEEP, STATEMENTS (1: load pg_stat_statements and print the service's
# top statements after each run; diagnostics, adds some overhead to both sides).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
pg_port=${BENCH_PG_PORT:-54398}
items=${ITEMS:-40000}
seconds=${BENCH_SECONDS:-10}
levels=${CONCURRENCY:-8 32 64}
db_pool=${DB_POOL:-16}
pgbench_jobs=${PGBENCH_JOBS:-2}

step() { printf '\n== %s   [load average %s]\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }

step "build ($build)"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
ninja -C "$build" -j "${FLYWHEEL_BUILD_JOBS:-2}" flywheel flywheel-annotation annotation_bench
bin=$build/bin
bench=$build/bench/annotation/annotation_bench
pgbench=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)/pgbench

work=$(mktemp -d /var/tmp/flywheel-bench-annotation.XXXXXX)
chmod 755 "$work"
pg_dir=$work/pg
logs=$work/logs
mkdir -p "$logs"
service_pid=

cleanup() {
  local code=$?
  if [ -n "$service_pid" ]; then
    kill -TERM "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  bash "$root/scripts/pg.sh" destroy "$pg_dir" >/dev/null 2>&1 || true
  if [ "${KEEP:-}" = 1 ]; then
    echo "kept $work (logs)"
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
if [ "${STATEMENTS:-}" = 1 ]; then
  psql -X -q "$admin" -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
  bash "$root/scripts/pg.sh" restart "$pg_dir" >/dev/null
fi
url="postgresql://postgres@127.0.0.1:$pg_port/flywheel"
psql -X -q "$admin" -c "CREATE DATABASE flywheel"
"$bin/flywheel" migrate --database_url "$url" >/dev/null
"$bin/flywheel" admin create-project --database_url "$url" --id bench --display_name bench >/dev/null
admin_key=$("$bin/flywheel" admin create-key --database_url "$url" --project bench --kind secret \
  --scopes admin --display_name bench-admin --quiet)
review_key=$("$bin/flywheel" admin create-key --database_url "$url" --project bench --kind secret \
  --scopes review --display_name bench-review --quiet)
psql -X -qtA "$admin" -c "SELECT version()" -c "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"

step "flywheel-annotation (--db_pool_size $db_pool)"
FLYWHEEL_DATABASE_URL="$url" "$bin/flywheel-annotation" --listen 127.0.0.1:0 \
  --port_file "$work/annotation.ports" --log_level warning --db_pool_size "$db_pool" </dev/null \
  >>"$logs/annotation.log" 2>&1 &
service_pid=$!
for _ in $(seq 1 300); do
  [ -f "$work/annotation.ports" ] && break
  kill -0 "$service_pid" 2>/dev/null || { tail -n 20 "$logs/annotation.log" >&2; exit 1; }
  sleep 0.1
done
address="127.0.0.1:$(sed -n 's/^grpc_port=//p' "$work/annotation.ports")"
"$bin/flywheel" health --address "$address" >/dev/null
echo "flywheel-annotation on $address (pid $service_pid)"

step "queues and $items items per queue (COPY), raw copy of the same rows, VACUUM ANALYZE"
for c in $levels; do
  "$bench" --mode create_queue --address "$address" --admin_key "$admin_key" --queue_id "q$c"
  "$bench" --mode copy_file --project bench --queue_id "q$c" --items "$items" --out "$work/q$c.tsv"
  psql -X -q -v ON_ERROR_STOP=1 "$url" -c "\\copy review.items (project_id, queue_id, trace_id, state, source, priority, required_reviews, enqueue_time, snapshot) from '$work/q$c.tsv'"
  rm -f "$work/q$c.tsv"
done
psql -X -q -v ON_ERROR_STOP=1 "$url" <<'SQL'
CREATE SCHEMA raw;
-- The same rows; has_annotations becomes a plain column (set by the raw submit).
CREATE TABLE raw.items AS SELECT * FROM review.items;
ALTER TABLE raw.items ADD PRIMARY KEY (project_id, queue_id, trace_id);
CREATE INDEX raw_items_claim ON raw.items
  (project_id, queue_id, priority DESC, has_annotations DESC, sampling_rank DESC, enqueue_time,
   trace_id)
  WHERE state = 1;
CREATE TABLE raw.annotations (LIKE review.annotations INCLUDING ALL);
SQL
psql -X -q "$url" -c "VACUUM ANALYZE"
[ "${STATEMENTS:-}" = 1 ] && psql -X -q "$url" -c "CREATE EXTENSION pg_stat_statements"
psql -X -qtA "$url" -c "SELECT 'review.items: ' || count(*) || ' rows, ' || pg_size_pretty(pg_total_relation_size('review.items')) || '; raw.items: ' || (SELECT count(*) FROM raw.items) || ' rows, ' || pg_size_pretty(pg_total_relation_size('raw.items')) FROM review.items"

# The raw loop: claim (SKIP LOCKED, the service's claim order, snapshot returned), then submit.
cat >"$work/raw.sql" <<'SQL'
\set r random(1, 1000000000)
BEGIN;
WITH c AS (
  SELECT project_id, queue_id, trace_id FROM raw.items
  WHERE project_id = 'bench' AND queue_id = :queue AND state = 1
  ORDER BY priority DESC, has_annotations DESC, sampling_rank DESC, enqueue_time, trace_id
  LIMIT 1 FOR UPDATE SKIP LOCKED),
u AS (
  UPDATE raw.items i SET state = 2, active_lease_count = active_lease_count + 1
  FROM c WHERE i.project_id = c.project_id AND i.queue_id = c.queue_id AND i.trace_id = c.trace_id
  RETURNING i.trace_id, i.snapshot)
SELECT count(*) AS got, coalesce(max(substr(trace_id, 2)::int), 0) AS n,
       (array_agg(snapshot))[1] AS snapshot FROM u \gset
COMMIT;
\if :got > 0
BEGIN;
UPDATE raw.items SET state = 3, annotation_count = annotation_count + 1, has_annotations = true,
  active_lease_count = active_lease_count - 1, complete_time = now()
  WHERE project_id = 'bench' AND queue_id = :queue AND trace_id = 't' || lpad(:n::text, 8, '0');
INSERT INTO raw.annotations (project_id, annotation_id, queue_id, trace_id, reviewer_id, lease_id,
  content, rubric_revision, time_spent_ms)
  VALUES ('bench', 'a' || :client_id || '-' || :r || '-' || :n, :queue,
          't' || lpad(:n::text, 8, '0'), 'rev-' || :client_id, 'l' || :client_id || '-' || :r,
          '\x0a060a026f6b1201181001', 1, 1000);
COMMIT;
\endif
SQL

tick=$(getconf CLK_TCK)
proc_cpu() {  # pid [with_children]: CPU seconds (user + system; + reaped children)
  awk -v t="$tick" -v c="${2:-0}" '{sub(/^.*\) /, ""); s = $12 + $13; if (c) s += $14 + $15;
    printf "%.2f", s / t}' "/proc/$1/stat" 2>/dev/null || echo 0
}
pg_cpu() {  # all of Postgres: the postmaster, what it reaped, and its live children
  local pm total child
  pm=$(head -n 1 "$pg_dir/data/postmaster.pid")
  total=$(proc_cpu "$pm" 1)
  for child in $(pgrep -P "$pm"); do total=$(calc "$total + $(proc_cpu "$child")"); done
  echo "$total"
}
pg_children() { pgrep -c -P "$(head -n 1 "$pg_dir/data/postmaster.pid")" || true; }
settle() {  # wait until the backends of finished clients are gone (and reaped: their CPU counted)
  for _ in $(seq 1 100); do [ "$(pg_children)" -le "$1" ] && break; sleep 0.1; done
  sleep 0.2
}
per_pair_ms() { calc "1000 * $1 / ($2 > 0 ? $2 : 1)"; }  # cpu_seconds pairs

done_count() {  # schema queue
  psql -X -qtA "$url" -c "SELECT count(*) FROM $1.items WHERE queue_id = '$2' AND state = 3"
}

summary=()
for c in $levels; do
  step "raw pgbench SKIP LOCKED loop, $c clients, ${seconds}s (queue q$c)"
  psql -X -q "$url" -c CHECKPOINT
  before=$(done_count raw "q$c")
  children=$(pg_children)
  pg0=$(pg_cpu)
  (cd "$logs" && /usr/bin/time -f "%U %S" -o "$logs/pgbench$c.time" "$pgbench" -n -M prepared \
    -c "$c" -j "$pgbench_jobs" -T "$seconds" -D queue="q$c" -f "$work/raw.sql" -l \
    --log-prefix "raw$c" "$url" >"$logs/pgbench$c.out" 2>&1) ||
    { cat "$logs/pgbench$c.out" >&2; exit 1; }
  settle "$children"
  pg1=$(pg_cpu)
  after=$(done_count raw "q$c")
  raw_rate=$(calc "($after - $before) / $seconds")
  raw_pg_ms=$(per_pair_ms "$(calc "$pg1 - $pg0")" "$((after - before))")
  raw_client_ms=$(per_pair_ms "$(awk '{print $1 + $2}' "$logs/pgbench$c.time")" "$((after - before))")
  raw_lat=$(cat "$logs"/raw$c.* 2>/dev/null | awk '$1 ~ /^[0-9]+$/ {print $3 / 1000}' | sort -n |
    awk '{v[NR] = $1} END {if (NR) printf "%.2f %.2f", v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1]; else print "0 0"}')
  left=$(psql -X -qtA "$url" -c "SELECT count(*) FROM raw.items WHERE queue_id = 'q$c' AND state = 1")
  printf '  raw      c=%-3s %9.1f pairs/s   pair p50 %s ms p99 %s ms   (%s items left)\n' "$c" \
    "$raw_rate" $raw_lat "$left"
  printf '           CPU per pair: postgres %.2f ms, pgbench %.2f ms\n' "$raw_pg_ms" "$raw_client_ms"
  [ "$left" -gt 0 ] || echo "  WARNING: the raw loop emptied its queue: raise ITEMS" >&2

  step "flywheel-annotation ClaimItem + SubmitAnnotation, $c reviewers, ${seconds}s (queue q$c)"
  psql -X -q "$url" -c CHECKPOINT
  [ "${STATEMENTS:-}" = 1 ] && psql -X -q "$url" -c "SELECT pg_stat_statements_reset()" >/dev/null
  before=$(done_count review "q$c")
  pg0=$(pg_cpu)
  svc0=$(proc_cpu "$service_pid")
  "$bench" --mode run --address "$address" --review_key "$review_key" --queue_id "q$c" \
    --concurrency "$c" --duration "${seconds}s" --warmup 1s >"$logs/service$c.out" 2>&1 ||
    { cat "$logs/service$c.out" >&2; exit 1; }
  pg1=$(pg_cpu)
  svc1=$(proc_cpu "$service_pid")
  after=$(done_count review "q$c")
  result=$(grep '^RESULT' "$logs/service$c.out")
  field() { sed -n 's/.*\b'"$1"'=\([^ ]*\).*/\1/p' <<<"$result"; }
  svc_rate=$(field pairs_per_s)
  svc_pg_ms=$(per_pair_ms "$(calc "$pg1 - $pg0")" "$((after - before))")
  svc_ms=$(per_pair_ms "$(calc "$svc1 - $svc0")" "$((after - before))")
  svc_client_ms=$(per_pair_ms "$(field client_cpu_s)" "$((after - before))")
  printf '  service  c=%-3s %9.1f pairs/s   claim p50 %s ms p99 %s ms   pair p50 %s ms p99 %s ms   (empty %s)\n' \
    "$c" "$svc_rate" "$(field claim_p50_ms)" "$(field claim_p99_ms)" "$(field pair_p50_ms)" \
    "$(field pair_p99_ms)" "$(field empty)"
  printf '           CPU per pair: postgres %.2f ms, flywheel-annotation %.2f ms, client %.2f ms\n' \
    "$svc_pg_ms" "$svc_ms" "$svc_client_ms"
  [ "$(field empty)" = 0 ] || echo "  WARNING: the service emptied its queue: raise ITEMS" >&2
  if [ "${STATEMENTS:-}" = 1 ]; then
    echo "           statements by total time (calls per pair, mean ms, share of time):"
    psql -X -qtA -F ' | ' "$url" -c "SELECT round(calls::numeric / $((after - before > 0 ? after - before : 1)), 2), round(mean_exec_time::numeric, 3), round(100 * total_exec_time / sum(total_exec_time) OVER ()) || '%', left(regexp_replace(query, '\s+', ' ', 'g'), 110) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'flywheel') AND query NOT LIKE 'SELECT count(*) FROM review.items WHERE queue_id%' ORDER BY total_exec_time DESC LIMIT 15" | sed 's/^/             /'
  fi
  ratio=$(calc "$svc_rate / $raw_rate")
  summary+=("$(printf '| %s | %.0f | %.0f | %.2fx | %s / %s | %s / %s | %s / %s | %.2f + %.2f / %.2f |' \
    "$c" "$svc_rate" "$raw_rate" "$ratio" "$(field claim_p50_ms)" "$(field claim_p99_ms)" \
    "$(field pair_p50_ms)" "$(field pair_p99_ms)" ${raw_lat% *} ${raw_lat#* } "$svc_ms" \
    "$svc_pg_ms" "$raw_pg_ms")")
done

step "summary (markdown)"
echo "| reviewers | service pairs/s | raw pairs/s | ratio | service claim p50 / p99 ms | service claim+submit p50 / p99 ms | raw claim+submit p50 / p99 ms | CPU ms per pair: service + its Postgres / raw Postgres |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${summary[@]}"
