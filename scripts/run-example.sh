#!/usr/bin/env bash
# Sets up, builds and runs the reference example on a throwaway local cluster:
# a head and one worker (node worker-1) in a private temporary state directory,
# on ports the system picks, so that it never meets a real cluster. The example
# is submitted with `sage job submit` and runs through RemoteEnvironment. The
# cluster is stopped and the directory removed however the script ends; the
# exit code is the example's. With --python, the example is the Python one
# (examples/python/parallelism_remote_validation.py, with the same output),
# run by Debian's python3 against the build's sage package.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

sage=build/bin/sage
example=(build/examples/parallelism_remote_validation)
if [ "${1:-}" = "--python" ]; then
  example=(examples/python/parallelism_remote_validation.py)  # run with python3 by `sage job submit`
  PYTHONPATH="$PWD/build/python${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONPATH  # the workers started below pass it on to their task processes
fi

# Only this cluster: no address, token or state directory from the caller.
unset SAGE_ADDRESS SAGE_TOKEN
SAGE_STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sage-example.XXXXXX")"
export SAGE_STATE_DIR

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  "$sage" cluster stop || true
  rm -rf "$SAGE_STATE_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== a local cluster in $SAGE_STATE_DIR"
"$sage" cluster start --head --port 0 --jobmanager-port 0 --dashboard-port 0
# head.json is one line of JSON: {"cluster":"127.0.0.1:PORT",...}
cluster_address="$(sed -n 's/.*"cluster":"\([^"]*\)".*/\1/p' "$SAGE_STATE_DIR/head.json")"
if [ -z "$cluster_address" ]; then
  echo "run-example: no cluster address in $SAGE_STATE_DIR/head.json" >&2
  exit 1
fi
"$sage" cluster start --worker --head-address="$cluster_address" --node-id worker-1
"$sage" cluster status

echo "== sage job submit ${example[*]}"
status=0
"$sage" job submit "${example[@]}" || status=$?
echo "== the example exited with $status; stopping the cluster"
exit "$status"
