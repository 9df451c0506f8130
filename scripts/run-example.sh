#!/usr/bin/env bash
# Sets up, builds and runs the reference example on a throwaway local cluster
# (scripts/lib/throwaway-cluster.sh: a head and one worker on free ports in a
# private temporary state directory, removed however the script ends). The
# example is submitted with `sage job submit` and runs through
# RemoteEnvironment; the exit code is the example's. With --python, the example is the Python one
# (examples/python/parallelism_remote_validation.py, with the same output),
# run by Debian's python3 against the build's sage package.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

source scripts/lib/throwaway-cluster.sh
example=(build/examples/parallelism_remote_validation)
if [ "${1:-}" = "--python" ]; then
  example=(examples/python/parallelism_remote_validation.py)  # run with python3 by `sage job submit`
  PYTHONPATH="$PWD/build/python${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONPATH  # the workers started below pass it on to their task processes
fi

make_throwaway_state_dir sage-example
# shellcheck disable=SC2119  # the worker takes no options here
start_throwaway_cluster

echo "== sage job submit ${example[*]}"
status=0
"$sage" job submit "${example[@]}" || status=$?
echo "== the example exited with $status; stopping the cluster"
exit "$status"
