#!/usr/bin/env bash
# Clustering engine speed benchmark: the command that reproduces docs/benchmarks.md
# ("Clustering engine: speed, memory, stability").
#
#   bash bench/clustering/run.sh
#
# Builds clustering_bench (into $BUILD_DIR, default <repo>/build) and runs it on COUNT synthetic
# flagged traces (bench/clustering/synthetic_failures.h, seeded; 18 failure themes, two of which
# only appear in the second half). It reports, single-threaded: text preparation, fitting the
# builtin embedder, embedding throughput (wall and per-core CPU), streaming assignment latency
# (NearestCentroid over THEMES centroids, and EmbedOne + NearestCentroid), a full re-clustering
# (fit + embed + automatic-k spherical k-means + groups + naming) with its quality against the
# true themes, peak memory, and theme-id stability across two re-clusterings of overlapping
# windows (each with its own refitted embedder; cold and warm-started). No database involved:
# the engine is pure computation. Not a test: nothing is asserted. A few minutes on 2 cores.
#
# Knobs (environment): BUILD_DIR, COUNT (100000), DIMENSION (128), MAX_K (40), THEMES (200),
# SEED (1), FLYWHEEL_BUILD_JOBS (2).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
ninja -C "$build" -j "${FLYWHEEL_BUILD_JOBS:-2}" clustering_bench >/dev/null
bin=$(find "$build" -type f -name clustering_bench -perm -u+x | head -n 1)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" --count "${COUNT:-100000}" --dimension "${DIMENSION:-128}" --max_k "${MAX_K:-40}" \
  --themes "${THEMES:-200}" --seed "${SEED:-1}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
