#!/usr/bin/env python3
"""SAGE's reference example (SPEC §4) in Python, as SAGE's page writes it:
from_collection(1..30) -> map DistributedProcessor "DistMapper" (parallelism 4)
-> filter multiples of 3 (parallelism 3) -> sink (parallelism 2), submitted
with autostop on the cluster at $SAGE_ADDRESS (default 127.0.0.1:19001), or
with --local on threads of this process. Exactly the ten multiples of 3 reach
the sinks; the output matches examples/parallelism_remote_validation.cpp.

  PYTHONPATH=build/python python3 examples/python/parallelism_remote_validation.py [--local]
"""

import os
import sys

from sage.common.core import FilterFunction, MapFunction, SinkFunction
from sage.kernel.api.local_environment import LocalEnvironment
from sage.kernel.api.remote_environment import RemoteEnvironment, is_task_process


def say(line):
    # One write per line (print() writes the newline apart): lines of concurrent instances
    # never interleave.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def where(ctx):
    return f"{ctx.parallel_index}/{ctx.parallelism} @ {ctx.node_id} pid {os.getpid()}"


class DistributedProcessor(MapFunction):
    def __init__(self, label, **kwargs):
        super().__init__(**kwargs)
        self.label = label

    def execute(self, data):
        say(f"⚙️  DistProcessor[{self.label} {where(self.ctx)}] processing {data}")
        return {"value": data, "mapper": where(self.ctx)}


class MultipleOfThree(FilterFunction):
    def execute(self, data):
        keep = data["value"] % 3 == 0
        verdict = "✅ Filter[" if keep else "❌ Filter["
        say(f"{verdict}{where(self.ctx)}] {data['value']} {'passes' if keep else 'dropped'}")
        return keep


class ResultSink(SinkFunction):
    def execute(self, data):
        say(f"🎯 SINK[{where(self.ctx)}] received {data['value']} (mapped by {data['mapper']})")


def main():
    local = "--local" in sys.argv[1:]
    if local:
        env = LocalEnvironment("parallelism_remote_validation")
    else:
        env = RemoteEnvironment("parallelism_remote_validation")
    (
        env.from_collection(list(range(1, 31)), name="numbers")
        .map(DistributedProcessor, "DistMapper", name="DistMapper", parallelism=4)
        .filter(MultipleOfThree, name="MultipleOfThree", parallelism=3)
        .sink(ResultSink, name="ResultSink", parallelism=2)
    )
    # Code before submit runs in every task process too (the script is the
    # job); the banner belongs to the submitting process only.
    if not is_task_process():
        print("=" * 60)
        print("REMOTE ENVIRONMENT - SINGLE STREAM PARALLELISM VALIDATION")
        print("=" * 60, flush=True)
    result = env.execute()
    at_sinks = sum(i.records_in for i in result.instances if i.operator_name == "ResultSink")
    print(
        f"\n📊 PARALLELISM STATISTICS (job {result.job_id}, {result.state} in "
        f"{result.duration_seconds:.3f} s)"
    )
    print(result.statistics_table, end="")
    print(f"Records reaching the sinks: {at_sinks} (expected 10)", flush=True)
    return 0 if at_sinks == 10 else 1


if __name__ == "__main__":
    sys.exit(main())
