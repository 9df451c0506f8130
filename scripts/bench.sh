#!/usr/bin/env bash
# Builds sage and runs every benchmark (W1-W3 in one process, W4-W6 on a
# throwaway local cluster, then the dashboard's cost), printing each table and
# writing the figures as JSON to bench-results/ (schema in docs/performance.md).
# Extra arguments go to the first two, e.g. --records 10000000 --repeat 5.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
mkdir -p bench-results
echo "== build/bench/engine_bench $*"
build/bench/engine_bench --json bench-results/engine.json "$@"
echo
echo "== build/bench/cluster_bench $*"
build/bench/cluster_bench --json bench-results/cluster.json "$@"
echo
# Its own options only (it takes neither --records nor --repeat).
echo "== build/bench/dashboard_bench"
build/bench/dashboard_bench --json bench-results/dashboard.json
echo
echo "JSON: bench-results/engine.json, bench-results/cluster.json, bench-results/dashboard.json"
