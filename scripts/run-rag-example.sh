#!/usr/bin/env bash
# Sets up, builds and runs the RAG example (examples/rag_pipeline.cpp) on a
# throwaway local cluster, like scripts/run-example.sh: it indexes the
# project's own docs/*.md, then answers questions about sage with a retriever
# (parallelism 4), a promptor and an OpenAI-compatible generator (parallelism 8).
# The generator talks to $OPENAI_BASE_URL when it is set (with $OPENAI_API_KEY,
# $OPENAI_MODEL); otherwise to sage's own test server (sage-openai-test-server,
# deterministic answers, 50 ms per request) started here on a free port. The
# cluster (scripts/lib/throwaway-cluster.sh), the server and the temporary
# directory go away however the script ends; the exit code is the example's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

source scripts/lib/throwaway-cluster.sh
example="$PWD/build/examples/rag_pipeline"

make_throwaway_state_dir sage-rag-example

if [ -z "${OPENAI_BASE_URL:-}" ]; then
  build/bin/sage-openai-test-server --port 0 --latency-ms 50 >"$SAGE_STATE_DIR/server.port" &
  server_pid=$!
  throwaway_pids+=("$server_pid")
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

# The ask job has 18 instances (1 + 4 + 4 + 8 + 1), most of them waiting on
# HTTP: the worker offers 32 CPU slots whatever the machine has.
start_throwaway_cluster --num-cpus 32

collection="$SAGE_STATE_DIR/docs-collection"
echo "== ingest docs/*.md into $collection"
"$sage" job submit "$example" ingest "$collection" "$PWD"/docs/*.md
echo "== ask"
status=0
"$sage" job submit "$example" ask "$collection" || status=$?
echo "== the example exited with $status; stopping the cluster"
exit "$status"
