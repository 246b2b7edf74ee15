#!/usr/bin/env python3
"""Markdown tables for bench/redis_bench.sh: medians per build of every metric in redis.csv
(round,build,metric,value), with the ratio to the jemalloc build and the spread (min-max)."""
import csv
import statistics
import sys
from collections import defaultdict

BUILDS = ["hakmem", "glibc", "jemalloc"]
REF = "jemalloc"


def load(path):
    data = defaultdict(list)
    with open(path) as f:
        for row in csv.DictReader(f):
            data[(row["build"], row["metric"])].append(float(row["value"]))
    return data


def table(data, rows, fmt, note):
    print("| metric | " + " | ".join(BUILDS) + " |")
    print("|---|" + "---:|" * len(BUILDS))
    for metric, label in rows:
        ref = data.get((REF, metric))
        cells = []
        for b in BUILDS:
            v = data.get((b, metric))
            if not v:
                cells.append("-")
                continue
            med = statistics.median(v)
            cell = f"{fmt(med)} ({med / statistics.median(ref):.2f})" if ref else fmt(med)
            cells.append(f"{cell} <sub>{fmt(min(v))}..{fmt(max(v))}</sub>")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    if note:
        print(note)
        print()


def main(path):
    data = load(path)
    n = max((len(v) for v in data.values()), default=0)
    print(f"## Throughput (requests/s, median of {n}; in brackets the ratio to jemalloc, "
          "higher is better; small: min..max)\n")
    table(data, [(f"{t}_rps", t) for t in ("SET", "GET", "LPUSH", "LRANGE_100")],
          lambda x: f"{x / 1000:.0f}k", "")
    print(f"## Memory (median of {n}; in brackets the ratio to jemalloc, lower is better)\n")
    rows = []
    for stage, label in (("filled", "filled"), ("half_0.5s", "half deleted, +0.5 s"),
                         ("half_2s", "half deleted, +2 s"), ("half_12s", "half deleted, +12 s")):
        rows += [(f"{stage}_used", f"{label}: used_memory"), (f"{stage}_rss", f"{label}: used_memory_rss")]
    table(data, rows, lambda x: f"{x / 2**20:.1f} MiB",
          "used_memory is Redis's own count (malloc_usable_size of each block for the libc "
          "builds, jemalloc's for jemalloc), so it differs between builds too.")
    print(f"## mem_fragmentation_ratio (used_memory_rss / used_memory, median of {n})\n")
    table(data, [(f"{s}_frag", s) for s in ("filled", "half_0.5s", "half_2s", "half_12s")],
          lambda x: f"{x:.2f}", "")


if __name__ == "__main__":
    main(sys.argv[1])
