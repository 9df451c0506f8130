# shellcheck shell=bash
# A throwaway local cluster for the example scripts (sourced, not run): a head
# and one worker (node worker-1) on ports the system picks, in a private
# temporary state directory, so that it never meets a real cluster. The
# cluster, the processes named in throwaway_pids and the directory go away
# however the calling script ends. Call from the repository root after
# scripts/build.sh:
#   make_throwaway_state_dir NAME       # exports SAGE_STATE_DIR, sets the traps
#   start_throwaway_cluster [WORKER OPTION...]

sage=build/bin/sage
throwaway_pids=()

# shellcheck disable=SC2317  # called by the EXIT trap
stop_throwaway_cluster() {
  "$sage" cluster stop || true
  if [ "${#throwaway_pids[@]}" -gt 0 ]; then kill "${throwaway_pids[@]}" 2>/dev/null || true; fi
  rm -rf "$SAGE_STATE_DIR"
}

make_throwaway_state_dir() {
  # Only this cluster: no address, token or state directory from the caller.
  unset SAGE_ADDRESS SAGE_TOKEN
  SAGE_STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  export SAGE_STATE_DIR
  trap stop_throwaway_cluster EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

start_throwaway_cluster() {
  echo "== a local cluster in $SAGE_STATE_DIR"
  "$sage" cluster start --head --port 0 --jobmanager-port 0 --dashboard-port 0
  # head.json is one line of JSON: {"cluster":"127.0.0.1:PORT",...}
  local address
  address="$(sed -n 's/.*"cluster":"\([^"]*\)".*/\1/p' "$SAGE_STATE_DIR/head.json")"
  if [ -z "$address" ]; then
    echo "$(basename "$0"): no cluster address in $SAGE_STATE_DIR/head.json" >&2
    exit 1
  fi
  "$sage" cluster start --worker --head-address="$address" --node-id worker-1 "$@"
  "$sage" cluster status
}
