#!/usr/bin/env python3
"""Helpers for ci/redis.sh and bench/redis_bench.sh (Redis built against hakmem).

  redis_tool.py free-range COUNT          print a base port B such that B..B+COUNT-1 and
                                          B+10000..B+10000+COUNT-1 have no listener and bind
  redis_tool.py probe-json FILE MIN       check that FILE (a server's stderr) holds hakmem's
                                          HAKMEM_DEBUG=json report with at least MIN mallocs
  redis_tool.py no-report FILE            check that FILE holds no hakmem report (glibc build)
  redis_tool.py compare HAK_DIR LIBC_DIR  compare two ./runtest runs (each DIR holds
                                          runtest.log and the servers' logs under tmp/);
                                          exit 1 if hakmem fails a test the libc build did not
  redis_tool.py selftest                  compare on made-up runs: it must pass and fail
"""
import glob
import json
import os
import random
import re
import socket
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Lines a crashing server writes to its log (Redis's crash report, assertions, panics).
CRASH = re.compile(r"REDIS BUG REPORT START|crashed by signal|=== ASSERTION FAILED ===|"
                   r"Guru Meditation|------ STACK TRACE ------")
STARTING = re.compile(r"### Starting test (.*)$")
WHY = re.compile(r"(==> .*|crashed by signal: \d+|Guru Meditation: .*|WATCHDOG TIMER EXPIRED)")


def listening_ports():
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":  # TCP_LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def can_bind(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_range(count):
    busy = listening_ports()
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000 - count)
        ports = list(range(base, base + count)) + list(range(base + 10000, base + 10000 + count))
        if busy.isdisjoint(ports) and can_bind(base) and can_bind(base + 10000):
            print(base)
            return 0
    print("redis_tool: no free port range found", file=sys.stderr)
    return 1


def hakmem_report(path):
    """The hakmem JSON object in a stderr file, or None."""
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith('{"hakmem"'):
                return json.loads(line)["hakmem"]
    return None


def probe_json(path, minimum):
    rep = hakmem_report(path)
    if rep is None:
        print(f"FAIL: no HAKMEM_DEBUG=json report in {path}: malloc is not hakmem's")
        return 1
    c = rep["counters"]
    mallocs = sum(sc["mallocs"] for sc in rep["size_classes"]) + c["large_alloc"]
    frees = c["free_tls_sll"] + c["free_ss_local"] + c["free_ss_remote"] + c["large_free"]
    print(f"hakmem report: {mallocs} mallocs by size class + large, {frees} frees counted, "
          f"{c['realloc_calls']} reallocs, {c['os_map_bytes'] >> 20} MiB mapped, "
          f"{c['thread_init']} thread heaps")
    if mallocs < minimum:
        print(f"FAIL: only {mallocs} mallocs went through hakmem, expected at least {minimum}")
        return 1
    return 0


def no_report(path):
    if hakmem_report(path) is not None:
        print(f"FAIL: {path} holds a hakmem report, but this build should use glibc's malloc")
        return 1
    return 0


def parse_run(run_dir):
    """Results of one ./runtest run: passed names, failed names, crashes, and whether the
    run itself ended cleanly (the summary line was printed)."""
    passed, failed, notes = set(), {}, {"ok_lines": 0}
    finished = False
    with open(os.path.join(run_dir, "runtest.log"), errors="replace") as f:
        lines = [ANSI.sub("", line.rstrip("\n")) for line in f]
    for i, line in enumerate(lines):
        m = re.match(r"\[ok\]: (.*) \(\d+ ms\)$", line)
        if m:
            passed.add(m.group(1))
            notes["ok_lines"] += 1
            continue
        m = re.match(r"\[(err|exception)\]: (.*)$", line)
        if m:
            name = re.sub(r" in tests/\S+\.tcl$", "", m.group(2))
            detail = lines[i + 1] if i + 1 < len(lines) else ""
            failed[name] = f"[{m.group(1)}] {detail}"[:300]
            continue
        if line.startswith("[TIMEOUT]"):
            failed["(runtest timeout)"] = line
        if "All tests passed without errors" in line or "The following tests failed" in line:
            finished = True
    if not finished:
        failed.setdefault("(runtest did not finish)", "no summary line in runtest.log")
    # A server that crashed counts as a failure of the test that was running, even when the
    # test itself did not notice (a crash at shutdown, or after its last command).
    for log in sorted(glob.glob(os.path.join(run_dir, "tmp", "*", "stdout"))):
        current = "(no test logged)"
        with open(log, errors="replace") as f:
            lines = f.readlines()
        for i, line in enumerate(lines):
            m = STARTING.search(line)
            if m:
                current = re.sub(r" in tests/\S+\.tcl$", "", m.group(1).strip())
            elif CRASH.search(line):
                # Key: the test and what the report says went wrong (an assertion's file:line,
                # the signal), the same in both builds for the crashes some tests provoke.
                why = "crash"
                for later in lines[max(0, i - 3):i + 12]:
                    w = WHY.search(later)
                    if w:
                        why = w.group(1).strip()
                        break
                failed[f"crash: {current}: {why}"] = f"{log}: {line.strip()}"[:300]
                break
    for err in sorted(glob.glob(os.path.join(run_dir, "tmp", "*", "stderr"))):
        with open(err, errors="replace") as f:
            for line in f:
                if line.startswith("hakmem:"):
                    failed[f"hakmem error: {line.strip()}"] = err
                    break
    return passed, failed, notes


def compare(hak_dir, libc_dir):
    hp, hf, hn = parse_run(hak_dir)
    lp, lf, ln = parse_run(libc_dir)
    print(f"hakmem build: {hn['ok_lines']} [ok] ({len(hp)} distinct names), {len(hf)} failed")
    print(f"glibc build:  {ln['ok_lines']} [ok] ({len(lp)} distinct names), {len(lf)} failed")
    for name, why in sorted(lf.items()):
        print(f"  glibc failed: {name}: {why}")
    regressions = {n: w for n, w in hf.items() if n not in lf}
    for name, why in sorted(hf.items()):
        tag = "REGRESSION" if name in regressions else "also under glibc"
        print(f"  hakmem failed ({tag}): {name}: {why}")
    if regressions:
        print(f"FAIL: {len(regressions)} test(s) fail with hakmem and not with glibc")
        return 1
    if len(hp) == 0:
        print("FAIL: no test passed under hakmem")
        return 1
    print("OK: hakmem fails no test that glibc passes")
    return 0


def selftest():
    """compare must pass a clean pair, pass a failure both builds share, and fail on a
    hakmem-only [err], on a crashed server whose test passed, and on an unfinished run."""
    import contextlib
    import io
    import tempfile

    ok_log = "[ok]: A (1 ms)\n[ok]: B (2 ms)\n\\o/ All tests passed without errors!\n"
    err_log = ("[ok]: A (1 ms)\n[err]: B in tests/unit/x.tcl\nExpected 1 got 2\n"
               "!!! WARNING The following tests failed:\n")
    crash = "### Starting test A in tests/unit/x.tcl\n=== REDIS BUG REPORT START: Cut & paste\n"
    cases = [  # (hakmem log, hakmem server stdout, glibc log, expected exit)
        (ok_log, "", ok_log, 0),
        (err_log, "", err_log, 0),
        (err_log, "", ok_log, 1),
        (ok_log, crash, ok_log, 1),
        ("[ok]: A (1 ms)\n", "", ok_log, 1),
    ]
    bad = 0
    for i, (hlog, hsrv, glog, want) in enumerate(cases):
        with tempfile.TemporaryDirectory() as d:
            for name, log, srv in (("h", hlog, hsrv), ("g", glog, "")):
                os.makedirs(os.path.join(d, name, "tmp", "server.1"))
                with open(os.path.join(d, name, "runtest.log"), "w") as f:
                    f.write(log)
                with open(os.path.join(d, name, "tmp", "server.1", "stdout"), "w") as f:
                    f.write(srv)
            with contextlib.redirect_stdout(io.StringIO()):
                got = compare(os.path.join(d, "h"), os.path.join(d, "g"))
        if got != want:
            print(f"selftest case {i}: compare returned {got}, expected {want}")
            bad += 1
    print(f"redis_tool selftest: {len(cases) - bad}/{len(cases)} cases as expected")
    return 1 if bad else 0


def main(argv):
    if argv[1:] == ["selftest"]:
        return selftest()
    if len(argv) == 3 and argv[1] == "free-range":
        return free_range(int(argv[2]))
    if len(argv) == 4 and argv[1] == "probe-json":
        return probe_json(argv[2], int(argv[3]))
    if len(argv) == 3 and argv[1] == "no-report":
        return no_report(argv[2])
    if len(argv) == 4 and argv[1] == "compare":
        return compare(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
