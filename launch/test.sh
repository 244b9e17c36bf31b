#!/usr/bin/env bash
# Runs every test: set-up (apt, venv, build), then ctest over unit, end-to-end and parity tests.
#   launch/test.sh [extra ctest arguments, e.g. -R parity]
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
./launch/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cmake --build build -j "$(nproc)" --target all >/dev/null
ctest --test-dir build --output-on-failure --timeout 1200 "$@"
