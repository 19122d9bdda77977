#!/usr/bin/env bash
# Stops the services and the local PostgreSQL started by scripts/up.sh. Data stays in .flywheel/.
# Usage: scripts/down.sh [--purge]   (--purge also deletes .flywheel/, i.e. all local data)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.flywheel"
for pid_file in "$state"/run/*.pid; do
  [ -f "$pid_file" ] || continue
  pid=$(cat "$pid_file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pid_file"
done
if [ -d "$state/pg" ]; then
  bash "$root/scripts/pg.sh" stop "$(readlink -f "$state/pg")"
fi
if [ "${1:-}" = "--purge" ]; then
  [ -L "$state/pg" ] && bash "$root/scripts/pg.sh" destroy "$(readlink -f "$state/pg")"
  rm -rf "$state"
fi
echo "stopped"
