#!/usr/bin/env bash
# Configures (once) and builds everything into build/. Usage: scripts/build.sh [ninja targets...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
# Two cores: two compile jobs (each gRPC translation unit needs about 1 GiB).
ninja -C "$build" -j "${FLYWHEEL_BUILD_JOBS:-2}" "$@"
