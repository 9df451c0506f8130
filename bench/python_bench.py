#!/usr/bin/env python3
"""The cost of running Python functions on sage's engine, against a same-run baseline.

P1: a trivial Python map on a LocalEnvironment (from_collection -> map, chained in
one task) against a plain Python loop that calls the same function on the same
records in this process and collects the results. The figure is the ratio of
their throughputs (target >= 0.5: the engine costs at most as much as the call).
P2: the same map followed by a Python sink (two calls per record).
P3: the map at parallelism 2: Python threads share one GIL, so this shows the
GIL's cost, not a speed-up (docs/python.md, "The GIL").

  PYTHONPATH=build/python python3 bench/python_bench.py [--records N] [--repeat R]
"""

import argparse
import statistics
import time

from sage.kernel.api.local_environment import LocalEnvironment


def trivial(x):
    return x + 1


def drop(x):
    pass


def plain_loop(data):
    start = time.perf_counter()
    out = []
    append = out.append
    for x in data:
        append(trivial(x))
    elapsed = time.perf_counter() - start
    assert len(out) == len(data)
    return elapsed


def pipeline(data, with_sink, parallelism=1):
    env = LocalEnvironment("python_bench")
    stream = env.from_collection(data).map(trivial, name="map", parallelism=parallelism)
    if with_sink:
        stream.sink(drop, name="sink", parallelism=parallelism)
    start = time.perf_counter()
    result = env.execute()
    elapsed = time.perf_counter() - start
    env.close()
    processed = sum(i.records_in for i in result.instances if i.operator_name == "map")
    assert processed == len(data), (processed, len(data))
    return elapsed


def best(times):
    return min(times), statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = list(range(args.records))

    rows = []
    runs = {
        "loop": lambda: plain_loop(data),
        "P1 map": lambda: pipeline(data, with_sink=False),
        "P2 map+sink": lambda: pipeline(data, with_sink=True),
        "P3 map p2": lambda: pipeline(data, with_sink=False, parallelism=2),
    }
    times = {name: [] for name in runs}
    for _ in range(args.repeat):  # interleaved, so drifts hit every variant alike
        for name, run in runs.items():
            times[name].append(run())
    loop_best, _ = best(times["loop"])
    print(f"{args.records} records, best of {args.repeat} (median in brackets)")
    print(f"{'workload':<14}{'Mrec/s':>10}{'median':>10}{'vs loop':>10}")
    for name in runs:
        b, m = best(times[name])
        rows.append((name, args.records / b / 1e6, args.records / m / 1e6, loop_best / b))
    for name, rate, median_rate, ratio in rows:
        print(f"{name:<14}{rate:>10.2f}{median_rate:>10.2f}{ratio:>10.2f}")
    ratio = rows[1][3]
    print(f"P1 ratio (map on sage / plain loop): {ratio:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
