#!/usr/bin/env python3
"""SAGE's RAG snippet from Python on sage, against SAGE's way of calling the model.

Both runs answer the same queries over the same collection against sage-openai-test-server
(started here on a free port, with --latency-ms per answer), on a LocalEnvironment, with one
generator instance:

R1: sage.middleware.operators.rag: ChromaRetrieverOperator -> QAPromptor ->
    OpenAIGeneratorOperator (C++; up to --max-in-flight requests open per instance).
R0: the same retriever and promptor, then a Python map that sends each request and waits for
    its answer (urllib), as SAGE's OpenAIGenerator does: one blocking call per record.

The figures: queries per second of each (median of --repeat runs), their ratio, and this
process's CPU seconds per query (getrusage: the engine and Python, not the server).

  PYTHONPATH=build/python python3 bench/python_rag_bench.py --server build/bin/sage-openai-test-server
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
import urllib.request

from sage.kernel.api.local_environment import LocalEnvironment
from sage.middleware.operators.rag import (
    ChromaRetrieverOperator,
    OpenAIGeneratorOperator,
    QAPromptor,
    build_collection,
)


class BlockingGenerator:
    """SAGE's generator shape: one POST per record, waiting for the answer."""

    def __init__(self, url):
        self.url = url + "/chat/completions"

    def execute(self, data):
        original, messages = data
        body = json.dumps({"model": "m", "messages": messages}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)["choices"][0]["message"]["content"]
        return dict(original, generated=answer)


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(queries, collection, generator):
    answered = []
    env = LocalEnvironment("rag-bench")
    stream = (
        env.from_collection(queries)
        .map(ChromaRetrieverOperator, collection=collection, top_k=5, parallelism=2)
        .map(QAPromptor, parallelism=2)
    )
    generator(stream).sink(answered.append)
    cpu, start = cpu_seconds(), time.perf_counter()
    env.execute()
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    env.close()
    assert len(answered) == len(queries), (len(answered), len(queries))
    return len(queries) / wall, cpu / len(queries)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--max-in-flight", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    server = subprocess.Popen(
        [args.server, "--port", "0", "--latency-ms", str(args.latency_ms)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/v1"
        with tempfile.TemporaryDirectory() as tmp:
            collection = os.path.join(tmp, "docs")
            build_collection(collection, [f"topic{i} alpha{i} beta{i} gamma{i}"
                                          for i in range(args.queries)])
            queries = [f"what about topic{i}" for i in range(args.queries)]
            native = lambda s: s.map(  # noqa: E731
                OpenAIGeneratorOperator, model="m", base_url=url,
                max_in_flight=args.max_in_flight, parallelism=1)
            blocking = lambda s: s.map(BlockingGenerator, url, parallelism=1)  # noqa: E731
            r1, r0 = [], []
            for _ in range(args.repeat):  # alternate, so that load affects both alike
                r1.append(run(queries, collection, native))
                r0.append(run(queries, collection, blocking))
    finally:
        server.terminate()
        server.wait()
    q1, q0 = statistics.median(r[0] for r in r1), statistics.median(r[0] for r in r0)
    c1, c0 = statistics.median(r[1] for r in r1), statistics.median(r[1] for r in r0)
    print(f"load average: {os.getloadavg()[0]:.2f}; {args.queries} queries, "
          f"{args.latency_ms} ms per answer, medians of {args.repeat}")
    print(f"R1 sage RAG operators (max_in_flight {args.max_in_flight}): {q1:8.1f} queries/s, "
          f"{c1 * 1e3:.3f} ms CPU per query")
    print(f"R0 one blocking Python call per record:      {q0:8.1f} queries/s, "
          f"{c0 * 1e3:.3f} ms CPU per query")
    print(f"ratio R1/R0: {q1 / q0:.1f}x queries/s, {c0 / c1:.2f}x less CPU per query")


if __name__ == "__main__":
    main()
