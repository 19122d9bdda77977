#!/usr/bin/env bash
# Runs bench/evalset on a throwaway Postgres cluster of its own and deletes it afterwards.
#   bash bench/evalset/run.sh [BUILD_DIR] [-- bench flags, e.g. --cases=100000 --repeat=3]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
shift || true
[ "${1:-}" = "--" ] && shift
[ -x "$build/bin/evalset_bench" ] || { echo "build first: ninja -C $build evalset_bench flywheel" >&2; exit 1; }
dir=/tmp/flywheel-bench-evalset-$$
trap 'bash "$root/scripts/pg.sh" destroy "$dir" >/dev/null 2>&1 || true' EXIT
bash "$root/scripts/pg.sh" start "$dir" 5432 "" --fast >/dev/null
conninfo="host=$dir port=5432 user=postgres dbname=postgres"
psql -X -q "$conninfo" -c 'CREATE DATABASE evalset_bench'
"$build/bin/flywheel" migrate --database_url "host=$dir port=5432 user=postgres dbname=evalset_bench" >/dev/null 2>&1
"$build/bin/evalset_bench" --database_url "host=$dir port=5432 user=postgres dbname=evalset_bench" "$@"
