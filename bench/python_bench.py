#!/usr/bin/env python3
"""The cost of running Python functions on sage's engine, against same-run baselines.

P1: a trivial Python map on a LocalEnvironment (from_collection -> map, chained in
one task) against a plain Python loop that calls the same function on the same
records in this process and collects the results. The figure is the ratio of
their throughputs (target >= 0.5: the engine costs at most as much as the call).
P2: the same map followed by a Python sink (two calls per record).
P3: the map at parallelism 2: Python threads share one GIL, so this shows the
GIL's cost, not a speed-up (docs/python.md, "The GIL and processes").
P4 (--cpu): a CPU-bound Python map (a pure-Python loop of about 20 us a record)
at parallelism 2 with LocalEnvironment(config={"processes": 2}) against the same
job in one process (target: >= 1.8x). Each run is a child `python3 this-script
--job cpu ...`, since the task processes re-run the script; it reports the job's
time from submit to end, the span from the first record mapped to the last, and
the CPU time of each process that ran the map.
W2 (--w2): the seed shape W2 (docs/performance.md: source -> map x*2 p4 ->
rebalance -> filter x%3==0 p3 -> rebalance -> sink(sum) p2) in Python on sage,
against the same in SAGE's style: a thread per operator instance, queue.Queue
between them, one function call and one queue hand-off per record.

Every figure is printed with the load average (os.getloadavg) at the time.

  PYTHONPATH=build/python python3 bench/python_bench.py [--records N] [--repeat R]
      [--only p|cpu|w2] [--cpu-records N] [--w2-records N]
"""

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time

from sage.common.core.functions import MapFunction, SinkFunction
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


def load():
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


# P4: a CPU-bound map, in one process and in two.


def spin(x, loops):
    """About 20 us of pure-Python work at the calibrated `loops`."""
    s = x
    for i in range(loops):
        s = (s * 31 + i) & 0xFFFFFFFF
    return s


def calibrate(target_us=20.0):
    """The loops that make spin() take about `target_us` of CPU time here: the least of 5
    timings of 200 calls, in CPU time, which other load on the machine barely changes."""
    loops = 1000

    def per_call_us():
        start = time.process_time()
        for x in range(200):
            spin(x, loops)
        return (time.process_time() - start) / 200 * 1e6

    return max(1, round(loops * target_us / min(per_call_us() for _ in range(5))))


class CpuMap(MapFunction):
    """spin() on each record; gauges: the wall time of its first and last record, and its
    process's CPU time when it opens and when it closes."""

    def __init__(self, loops):
        super().__init__()
        self.loops = loops
        self.first = None

    def open(self, ctx):
        self.metrics = ctx.get_metrics()
        self.metrics.set_gauge("cpu_at_open", time.process_time())

    def execute(self, x):
        now = time.time()
        if self.first is None:
            self.first = now
            self.metrics.set_gauge("first", now)
        out = spin(x, self.loops)
        self.metrics.set_gauge("last", time.time())
        return out

    def close(self):
        self.metrics.set_gauge("cpu_at_close", time.process_time())


def cpu_job(records, loops, processes):
    """The P4 job (run as `--job cpu`): prints one BENCH line of JSON."""
    env = LocalEnvironment("python_bench_cpu", config={"processes": processes})
    (
        env.from_collection(list(range(records)))
        .map(CpuMap, loops, name="spin", parallelism=2)
        .sink(drop, name="sink", parallelism=1)
    )
    start = time.perf_counter()
    result = env.execute()
    elapsed = time.perf_counter() - start
    env.close()
    maps = [i for i in result.instances if i.operator_name == "spin"]
    assert sum(i.records_in for i in maps) == records, [i.records_in for i in maps]
    # Per process: its CPU time from the first of its map instances opening to the last
    # closing (the job's work there, without the interpreter's start and imports).
    opened, closed = {}, {}
    for i in maps:
        pid = i.process_id
        opened[pid] = min(opened.get(pid, float("inf")), i.gauges["cpu_at_open"])
        closed[pid] = max(closed.get(pid, 0.0), i.gauges["cpu_at_close"])
    cpu = {pid: closed[pid] - opened[pid] for pid in opened}
    span = max(i.gauges["last"] for i in maps) - min(i.gauges["first"] for i in maps)
    print("BENCH " + json.dumps({"seconds": elapsed, "span": span, "cpu": cpu}), flush=True)


def run_cpu_job(records, loops, processes):
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--job", "cpu", "--cpu-records",
         str(records), "--loops", str(loops), "--processes", str(processes)],
        capture_output=True, text=True, timeout=600,
    )
    total = time.perf_counter() - started
    lines = [line for line in child.stdout.splitlines() if line.startswith("BENCH ")]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"the P4 job with {processes} processes failed:\n{child.stdout}\n"
                           f"{child.stderr}")
    figures = json.loads(lines[-1][len("BENCH "):])
    figures["total"] = total
    figures["load"] = load()
    return figures


def bench_cpu(args):
    loops = calibrate()
    start = time.process_time()
    for x in range(2000):
        spin(x, loops)
    per_record_us = (time.process_time() - start) / 2000 * 1e6
    print(f"P4: CPU-bound map, {args.cpu_records} records, spin({loops} loops) = "
          f"{per_record_us:.1f} us of CPU a record here ({load()})")
    runs = {1: [], 2: []}
    for _ in range(args.repeat):  # alternating, so drifts hit both alike
        for processes in runs:
            figures = run_cpu_job(args.cpu_records, loops, processes)
            runs[processes].append(figures)
            cpu = ", ".join(f"pid {pid}: {sec:.2f} s" for pid, sec in figures["cpu"].items())
            cpu += f"; {sum(figures['cpu'].values()) / args.cpu_records * 1e6:.1f} us a record"
            print(f"  processes={processes}: job {figures['seconds']:.2f} s, first-to-last "
                  f"record {figures['span']:.2f} s, script start to exit "
                  f"{figures['total']:.2f} s; CPU of each process while its maps ran: {cpu} "
                  f"({figures['load']})", flush=True)
    one = {k: statistics.median(f[k] for f in runs[1]) for k in ("seconds", "span", "total")}
    two = {k: statistics.median(f[k] for f in runs[2]) for k in ("seconds", "span", "total")}
    print(f"P4 medians of {args.repeat}: one process {args.cpu_records / one['span']:.0f} "
          f"records/s over the records' span, two task processes "
          f"{args.cpu_records / two['span']:.0f}/s: ratio {one['span'] / two['span']:.2f} "
          f"(target >= 1.8); job time ratio {one['seconds'] / two['seconds']:.2f}, start-to-exit "
          f"ratio {one['total'] / two['total']:.2f} ({load()})")


# W2: source -> map p4 -> rebalance -> filter p3 -> rebalance -> sink p2.


def double(x):
    return x * 2


def third(x):
    return x % 3 == 0


W2_TOTALS = []


class SumSink(SinkFunction):
    def __init__(self):
        super().__init__()
        self.total = 0

    def execute(self, x):
        self.total += x

    def close(self):
        W2_TOTALS.append(self.total)


def w2_expected(records):
    return sum(x * 2 for x in range(records) if (x * 2) % 3 == 0)


def w2_sage(data):
    W2_TOTALS.clear()
    env = LocalEnvironment("python_bench_w2")
    (
        env.from_collection(data)
        .map(double, name="map", parallelism=4)
        .rebalance()
        .filter(third, name="filter", parallelism=3)
        .rebalance()
        .sink(SumSink, name="sink", parallelism=2)
    )
    start = time.perf_counter()
    env.execute()
    elapsed = time.perf_counter() - start
    env.close()
    assert sum(W2_TOTALS) == w2_expected(len(data))
    return elapsed


_END = object()


def w2_sage_style(data):
    """SAGE's local runtime, imitated: each operator instance is a thread that takes one record
    at a time from its queue.Queue, calls the function once, and puts the result into the next
    operator's queues round-robin; the end travels as a marker that each instance passes on
    once it has one from every upstream instance."""
    totals = []
    sinks = [queue.Queue(maxsize=10_000) for _ in range(2)]
    filters = [queue.Queue(maxsize=10_000) for _ in range(3)]
    maps = [queue.Queue(maxsize=10_000) for _ in range(4)]

    def instance(inbox, upstream, function, outputs, kind):
        ended, turn, total = 0, 0, 0
        while True:
            record = inbox.get()
            if record is _END:
                ended += 1
                if ended == upstream:
                    for out in outputs:
                        out.put(_END)
                    if kind == "sink":
                        totals.append(total)
                    return
                continue
            if kind == "sink":
                total += record
                continue
            value = function(record)
            if kind == "filter" and not value:
                continue
            outputs[turn].put(record if kind == "filter" else value)
            turn = (turn + 1) % len(outputs)

    threads = [threading.Thread(target=instance, args=(q, 1, double, filters, "map"))
               for q in maps]
    threads += [threading.Thread(target=instance, args=(q, 4, third, sinks, "filter"))
                for q in filters]
    threads += [threading.Thread(target=instance, args=(q, 3, None, [], "sink")) for q in sinks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    turn = 0
    for record in data:  # the source instance
        maps[turn].put(record)
        turn = (turn + 1) % len(maps)
    for q in maps:
        q.put(_END)
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    assert sum(totals) == w2_expected(len(data))
    return elapsed


def bench_w2(args):
    data = list(range(args.w2_records))
    runs = {"sage": w2_sage, "SAGE-style": w2_sage_style}
    times = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, run in runs.items():
            times[name].append(run(data))
            print(f"  W2 {name}: {len(data) / times[name][-1] / 1e6:.3f} M records/s "
                  f"({load()})", flush=True)
    sage_median = statistics.median(times["sage"])
    style_median = statistics.median(times["SAGE-style"])
    print(f"W2 in Python, {len(data)} records, medians of {args.repeat}: sage "
          f"{len(data) / sage_median / 1e6:.3f} M records/s, SAGE-style threads and queues "
          f"{len(data) / style_median / 1e6:.3f} M records/s: ratio "
          f"{style_median / sage_median:.1f} ({load()})")


def bench_calls(args):
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
    print(f"{args.records} records, best of {args.repeat} (median in brackets) ({load()})")
    print(f"{'workload':<14}{'Mrec/s':>10}{'median':>10}{'vs loop':>10}")
    for name in runs:
        b, m = best(times[name])
        rows.append((name, args.records / b / 1e6, args.records / m / 1e6, loop_best / b))
    for name, rate, median_rate, ratio in rows:
        print(f"{name:<14}{rate:>10.2f}{median_rate:>10.2f}{ratio:>10.2f}")
    ratio = rows[1][3]
    print(f"P1 ratio (map on sage / plain loop): {ratio:.2f} (target >= 0.5)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=["p", "cpu", "w2"],
                        help="run only P1-P3 (p), P4 (cpu) or W2 (w2)")
    parser.add_argument("--cpu-records", type=int, default=200_000)
    parser.add_argument("--w2-records", type=int, default=200_000)
    # The P4 job itself, as run_cpu_job starts it (and its task processes re-run it).
    parser.add_argument("--job", choices=["cpu"], help=argparse.SUPPRESS)
    parser.add_argument("--loops", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job == "cpu":
        cpu_job(args.cpu_records, args.loops, args.processes)
        return
    if args.only in (None, "p"):
        bench_calls(args)
    if args.only in (None, "cpu"):
        bench_cpu(args)
    if args.only in (None, "w2"):
        bench_w2(args)


if __name__ == "__main__":
    main()
