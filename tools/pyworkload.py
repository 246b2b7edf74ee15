"""A real-program workload for the demo: Python with PYTHONMALLOC=malloc, so every object
allocation goes through the C allocator under test. Builds and tears down dicts, lists and
strings, round-trips JSON, sorts, and runs a few threads. Prints a checksum (identical
under every allocator), the elapsed seconds and the peak RSS in KiB."""
import json
import resource
import sys
import threading
import time


def work(seed, n):
    rows = [{"id": i, "name": "user%d" % (i * seed % 9973), "tags": [str(j) for j in range(i % 7)],
             "score": (i * 2654435761 + seed) % 1000003} for i in range(n)]
    text = json.dumps(rows)
    back = json.loads(text)
    back.sort(key=lambda r: (r["score"], r["name"]))
    index = {}
    for r in back:
        index.setdefault(r["name"], []).append(r["id"])
    joined = ",".join(r["name"] for r in back[:5000])
    return len(text) + len(index) + len(joined) + back[0]["score"]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60000
    start = time.perf_counter()
    total = 0
    for rnd in range(3):
        total += work(rnd + 1, n)
    results = [0] * 2
    def run(k):
        results[k] = work(k + 11, n // 2)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total += sum(results)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("checksum %d seconds %.3f peak_kib %d" % (total, elapsed, peak))


if __name__ == "__main__":
    main()
