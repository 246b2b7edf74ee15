# preload_debug_report: hakmem really serves a preloaded program. HAKMEM_DEBUG=1 prints the
# text report on stderr ("hakmem: counters", thread_init >= the program's threads) without
# touching stdout; HAKMEM_DEBUG=json prints one line starting with {"hakmem" that parses
# as JSON with the same counters. args: PROGRAM MIN_THREADS PYTHON
. "$(dirname "$0")/lib.sh"
PROG=$1
MIN_THREADS=$2
PY=$3

"$PROG" >"$W/plain.out" 2>"$W/plain.err" || fail "the plain run failed"
grep -q 'hakmem' "$W/plain.err" && fail "a report without hakmem preloaded?"

LD_PRELOAD="$LIB" HAKMEM_DEBUG=1 "$PROG" >"$W/text.out" 2>"$W/text.err" || fail "the run with HAKMEM_DEBUG=1 failed"
cmp -s "$W/plain.out" "$W/text.out" || fail "HAKMEM_DEBUG=1 changed the program's stdout"
grep -q '^hakmem: counters' "$W/text.err" || fail "no 'hakmem: counters' report on stderr with HAKMEM_DEBUG=1"
[ "$(grep -c '^hakmem: counters' "$W/text.err")" -eq 1 ] || fail "expected exactly one report"
ti=$(awk '$1 == "thread_init" { print $2 }' "$W/text.err")
[ -n "$ti" ] || fail "the report has no thread_init line"
[ "$ti" -ge "$MIN_THREADS" ] || fail "thread_init = $ti in the report, expected >= $MIN_THREADS"
tx=$(awk '$1 == "thread_exit" { print $2 }' "$W/text.err")
[ "$tx" -ge $((MIN_THREADS - 1)) ] || fail "thread_exit = $tx in the report, expected >= $((MIN_THREADS - 1))"
echo "text report: thread_init=$ti thread_exit=$tx"

LD_PRELOAD="$LIB" HAKMEM_DEBUG=json "$PROG" >"$W/json.out" 2>"$W/json.err" || fail "the run with HAKMEM_DEBUG=json failed"
cmp -s "$W/plain.out" "$W/json.out" || fail "HAKMEM_DEBUG=json changed the program's stdout"
grep -q '^{"hakmem"' "$W/json.err" || fail "no line starting with {\"hakmem\" on stderr with HAKMEM_DEBUG=json"
grep -q '^hakmem: counters' "$W/json.err" && fail "HAKMEM_DEBUG=json printed the text report"
env -u LD_PRELOAD "$PY" - "$W/json.err" "$MIN_THREADS" <<'PYEOF' || fail "the JSON report does not check out (see above)"
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith('{"hakmem"')]
assert len(lines) == 1, "expected one JSON report, got %d" % len(lines)
doc = json.loads(lines[0])
c = doc["hakmem"]["counters"]
need = int(sys.argv[2])
assert c["thread_init"] >= need, "thread_init = %d < %d" % (c["thread_init"], need)
assert all(isinstance(v, int) and v >= 0 for v in c.values()), "counters must be non-negative integers"
for k in ("alloc_refill", "free_tls_sll", "free_ss_remote", "os_map_calls"):
    assert c[k] > 0, "counter %s is 0" % k
sc = doc["hakmem"]["size_classes"]
assert sc and all({"class", "size", "mallocs", "refills"} <= set(e) for e in sc), "size_classes malformed"
assert sum(e["mallocs"] for e in sc) > 0, "no mallocs in size_classes"
print("json report: %d counters, thread_init=%d, %d size classes in use" % (len(c), c["thread_init"], len(sc)))
PYEOF
