#!/usr/bin/env bash
# Sets up, builds and runs the reference example.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
./build/examples/parallelism_remote_validation
