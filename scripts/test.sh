#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test tier (unit, db, e2e)
# with CTest. db and e2e tests start their own throwaway Postgres (see tests/CMakeLists.txt).
# Usage: scripts/test.sh [extra ctest args, e.g. -L unit or -R auth]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/install-deps.sh"
echo "== build"
bash "$root/scripts/build.sh"
echo "== test"
cd "$root/build"
ctest -j "${FLYWHEEL_TEST_JOBS:-2}" --output-on-failure --timeout 600 "$@"
