#!/usr/bin/env bash
# Recreates flywheel_template in the test cluster and migrates every schema into it with the real
# `flywheel migrate` command. Usage: make_template.sh CONNINFO FLYWHEEL_BINARY
set -euo pipefail
conninfo=$1
flywheel=$2
psql -q -v ON_ERROR_STOP=1 "$conninfo" \
  -c 'DROP DATABASE IF EXISTS flywheel_template WITH (FORCE)' \
  -c 'CREATE DATABASE flywheel_template'
"$flywheel" migrate --database_url "$conninfo dbname=flywheel_template"
