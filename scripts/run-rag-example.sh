#!/usr/bin/env bash
# Sets up, builds and runs the RAG example (examples/rag_pipeline.cpp) on a
# throwaway local cluster, like scripts/run-example.sh: it indexes the
# project's own docs/*.md, then answers questions about sage with a retriever
# (parallelism 4), a promptor and an OpenAI-compatible generator (parallelism 8).
# The generator talks to $OPENAI_BASE_URL when it is set (with $OPENAI_API_KEY,
# $OPENAI_MODEL); otherwise to sage's own test server (sage-openai-test-server,
# deterministic answers, 50 ms per request) started here on a free port. The
# cluster, the server and the temporary directory go away however the script
# ends; the exit code is the example's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

sage=build/bin/sage
example="$PWD/build/examples/rag_pipeline"

# Only this cluster: no address, token or state directory from the caller.
unset SAGE_ADDRESS SAGE_TOKEN
SAGE_STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sage-rag-example.XXXXXX")"
export SAGE_STATE_DIR
server_pid=""

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  "$sage" cluster stop || true
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$SAGE_STATE_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${OPENAI_BASE_URL:-}" ]; then
  build/bin/sage-openai-test-server --port 0 --latency-ms 50 >"$SAGE_STATE_DIR/server.port" &
  server_pid=$!
  for _ in $(seq 100); do
    [ -s "$SAGE_STATE_DIR/server.port" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "run-rag-example: the test server did not start" >&2
      exit 1
    fi
    sleep 0.1
  done
  port="$(head -n1 "$SAGE_STATE_DIR/server.port")"
  if [ -z "$port" ]; then
    echo "run-rag-example: the test server printed no port within 10 s" >&2
    exit 1
  fi
  export OPENAI_BASE_URL="http://127.0.0.1:$port/v1"
  echo "== sage's OpenAI-compatible test server at $OPENAI_BASE_URL"
fi

echo "== a local cluster in $SAGE_STATE_DIR"
"$sage" cluster start --head --port 0 --jobmanager-port 0 --dashboard-port 0
cluster_address="$(sed -n 's/.*"cluster":"\([^"]*\)".*/\1/p' "$SAGE_STATE_DIR/head.json")"
if [ -z "$cluster_address" ]; then
  echo "run-rag-example: no cluster address in $SAGE_STATE_DIR/head.json" >&2
  exit 1
fi
# The ask job has 18 instances (1 + 4 + 4 + 8 + 1), most of them waiting on
# HTTP: the worker offers 32 CPU slots whatever the machine has.
"$sage" cluster start --worker --head-address="$cluster_address" --node-id worker-1 --num-cpus 32

collection="$SAGE_STATE_DIR/docs-collection"
echo "== ingest docs/*.md into $collection"
"$sage" job submit "$example" ingest "$collection" "$PWD"/docs/*.md
echo "== ask"
status=0
"$sage" job submit "$example" ask "$collection" || status=$?
echo "== the example exited with $status; stopping the cluster"
exit "$status"
