#!/usr/bin/env bash
# Stops the services and the local PostgreSQL started by scripts/up.sh. Data stays in .flywheel/.
# Usage: scripts/down.sh [--purge]   (--purge also deletes .flywheel/, i.e. all local data)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.flywheel"
for pid_file in "$state"/run/*.pid; do
  [ -f "$pid_file" ] || continue
  name=$(basename "$pid_file" .pid)
  pid=$(cat "$pid_file")
  # Only signal the process if the pid still belongs to our binary (pids are reused).
  if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$root/build/bin/flywheel-$name" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pid_file" "$state/run/$name.ports"
done
if [ -e "$state/pg" ]; then
  bash "$root/scripts/pg.sh" stop "$(readlink -f "$state/pg")"
fi
if [ "${1:-}" = "--purge" ]; then
  [ -L "$state/pg" ] && bash "$root/scripts/pg.sh" destroy "$(readlink -f "$state/pg")"
  rm -rf "$state"
fi
echo "stopped"
