#!/usr/bin/env bash
# Clustering quality benchmark: the command that reproduces docs/benchmarks.md ("Clustering
# quality"). The engine and scikit-learn cluster the same labelled texts at the true number of
# classes in the same run; V-measure, ARI and matched accuracy are printed side by side.
#
#   bash bench/clustering_quality/run.sh
#
# Corpora are installed here, at benchmark time (nothing is committed): dict-foldoc (FOLDOC entries
# labelled by domain tag), the apt package lists (package descriptions labelled by Debian section,
# via apt-cache dumpavail; `apt-get update` when the lists are empty), and the project's synthetic
# failure-theme set. Needs root (or the packages already installed) for apt-get. Builds
# clustering_quality_bench (into $BUILD_DIR, default <repo>/build). A few minutes on 2 cores.
#
# Knobs (environment): BUILD_DIR, SEEDS (1,2,3), PER_CLASS (150), SYNTHETIC_COUNT (6000),
# CORPORA (foldoc,debian,synthetic), ENGINE_ARGS (extra flags for clustering_quality_bench, e.g.
# "--dimension 100 --singular_power 1"), FLYWHEEL_BUILD_JOBS (2).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
python=/usr/bin/python3  # Debian's python, where python3-sklearn lives

missing=()
"$python" -c 'import sklearn, scipy, numpy' 2>/dev/null || missing+=(python3-sklearn)
[ -f /usr/share/dictd/foldoc.dict.dz ] || missing+=(dict-foldoc)
if [ "$(apt-cache dumpavail 2>/dev/null | grep -c '^Package:' || true)" -lt 1000 ]; then
  apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
fi

if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
ninja -C "$build" -j "${FLYWHEEL_BUILD_JOBS:-2}" clustering_quality_bench >/dev/null
bin=$(find "$build" -type f -name clustering_quality_bench -perm -u+x | head -n 1)
echo "scikit-learn $("$python" -c 'import sklearn; print(sklearn.__version__)'), $(nproc) cores"
"$python" "$root/bench/clustering_quality/quality.py" --binary "$bin" \
  --seeds "${SEEDS:-1,2,3}" --per_class "${PER_CLASS:-150}" \
  --synthetic_count "${SYNTHETIC_COUNT:-6000}" --corpora "${CORPORA:-foldoc,debian,synthetic}" \
  --engine_args "${ENGINE_ARGS:-}"
