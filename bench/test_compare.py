"""Tests of bench/compare (CTest compare.selftest, label bench).

1. The summary: medians, failed runs left out, ratios to the best for throughput rows
   (higher is better) and time rows (lower is better), RSS ratios to the lowest, and the
   first / tied / behind verdict.
2. A real run: `bench/compare --quick --rows ^json$ --allocators "hakmem glibc"` on the
   programs already built, into a temporary results folder; the CSV must hold one ok line
   per round and allocator with a plausible value and peak RSS, and the markdown a row with
   both allocators and one best cell.

usage: python3 bench/test_compare.py BUILD_DIR"""
import csv
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = None


def load_compare():
    loader = importlib.machinery.SourceFileLoader("compare", os.path.join(HERE, "compare"))
    spec = importlib.util.spec_from_loader("compare", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


class Summary(unittest.TestCase):
    def test_ratios(self):
        c = load_compare()
        rows = [("tp", "p", "", "", "ops_per_s", True), ("lat", "p", "", "", "median_ns", False)]

        def run(row, alloc, value, rss, status="ok"):
            return {"row": row, "alloc": alloc, "value": value, "rss_kb": rss, "minflt": 10,
                    "majflt": 0, "status": status}

        runs = [run("tp", "a", 100, 1000), run("tp", "a", 300, 1000), run("tp", "a", 200, 3000),
                run("tp", "b", 50, 500), run("tp", "b", 0, 0, "fail"),
                run("lat", "a", 10, 100), run("lat", "b", 40, 200), run("lat", "b", 20, 200)]
        t = c.summarize(rows, ["a", "b"], runs)
        a, b = t["tp"][2]["a"], t["tp"][2]["b"]
        self.assertEqual(a["value"], 200)           # median of 100, 200, 300
        self.assertEqual((a["lo"], a["hi"]), (100, 300))
        self.assertEqual(a["ratio"], 1.0)           # the best throughput
        self.assertEqual(b["ratio"], 4.0)           # 200 / 50: four times slower
        self.assertEqual(b["fails"], 1)
        self.assertEqual(b["n"], 1)
        self.assertEqual(b["rss_ratio"], 1.0)       # 500 KiB is the lowest
        self.assertEqual(a["rss_ratio"], 2.0)       # median 1000 / 500
        la, lb = t["lat"][2]["a"], t["lat"][2]["b"]
        self.assertEqual(la["ratio"], 1.0)          # 10 ns is the best time
        self.assertEqual(lb["ratio"], 3.0)          # median 30 / 10

    def test_verdict(self):
        c = load_compare()
        rows = [("tp", "p", "", "", "ops_per_s", True)]

        def run(alloc, value):
            return {"row": "tp", "alloc": alloc, "value": value, "rss_kb": 1, "minflt": 0,
                    "majflt": 0, "status": "ok"}

        # b's best round (95) reaches a's worst (90): tied; c's (80) does not: behind
        runs = [run("a", v) for v in (90, 100, 110)] + [run("b", v) for v in (70, 80, 95)] + \
               [run("c", v) for v in (60, 70, 80)]
        cells = c.summarize(rows, ["a", "b", "c"], runs)["tp"][2]
        self.assertEqual(c.verdict(cells, "a", True), "first")
        self.assertEqual(c.verdict(cells, "b", True), "tied (ranges overlap)")
        self.assertEqual(c.verdict(cells, "c", True), "behind")

    def test_metric_parsing(self):
        c = load_compare()
        self.assertEqual(c.parse_metric("x ops_per_s=1.5e6 y", "ops_per_s"), 1.5e6)
        self.assertEqual(c.parse_metric("median_ns=12 p95_ns=40", "median_ns"), 12)
        self.assertIsNone(c.parse_metric("nothing here", "ops_per_s"))


class RealRun(unittest.TestCase):
    def test_quick_json(self):
        with tempfile.TemporaryDirectory() as out:
            env = dict(os.environ, HAKMEM_BENCH_BUILD=BUILD, HAKMEM_BENCH_RESULTS=out)
            r = subprocess.run([sys.executable, os.path.join(HERE, "compare"), "--quick",
                                "--rows", "^json$", "--allocators", "hakmem glibc",
                                "--no-install", "--no-build", "--no-chart"],
                               env=env, capture_output=True, text=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            with open(os.path.join(out, "compare.csv")) as f:
                lines = list(csv.DictReader(f))
            self.assertEqual(len(lines), 6)         # 3 rounds x 2 allocators
            self.assertEqual(sorted({l["allocator"] for l in lines}), ["glibc", "hakmem"])
            for l in lines:
                self.assertEqual(l["status"], "ok")
                self.assertGreater(float(l["value"]), 0)
                self.assertGreater(int(l["peak_rss_kb"]), 500)
                self.assertLess(int(l["peak_rss_kb"]), 200 * 1024)
            md = open(os.path.join(out, "compare.md")).read()
            row = [l for l in md.splitlines() if l.startswith("| json |")]
            self.assertEqual(len(row), 5)           # standing, speed, RSS, faults, spread tables
            self.assertRegex(row[0], r"\| (first|tied \(ranges overlap\)|behind) \|")
            self.assertIn("(1.00)**", row[1])      # one best cell in the speed table


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
