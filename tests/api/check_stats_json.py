#!/usr/bin/env python3
"""Run `<api_info> stats_json_dump` and check that hak_stats_print(fd, 1) wrote exactly one
JSON object with the expected structure. Exit status 1 with a message on any mismatch."""
import json
import subprocess
import sys


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


out = subprocess.run([sys.argv[1], "stats_json_dump"], stdout=subprocess.PIPE, check=True, timeout=30).stdout
text = out.decode("ascii")
try:
    doc = json.loads(text)  # one value, nothing but whitespace around it
except ValueError as e:
    fail("not one JSON value: %s\n%s" % (e, text))
if not isinstance(doc, dict) or list(doc) != ["hakmem"]:
    fail("top level is not {\"hakmem\": ...}: %r" % (list(doc) if isinstance(doc, dict) else doc))
h = doc["hakmem"]
counters, classes = h.get("counters"), h.get("size_classes")
if not isinstance(counters, dict) or not isinstance(classes, list):
    fail("hakmem.counters must be an object and hakmem.size_classes an array")
for key in ("alloc_refill", "alloc_tls_sll", "free_tls_sll", "refill_carve", "large_alloc", "os_map_bytes"):
    if not isinstance(counters.get(key), int) or counters[key] < 0:
        fail("counter %s missing or not a non-negative integer" % key)
seen = set()
for c in classes:
    if not isinstance(c, dict) or set(c) != {"class", "size", "mallocs", "refills"}:
        fail("bad size_classes entry %r" % (c,))
    if not all(isinstance(v, int) and v >= 0 for v in c.values()):
        fail("non-integer value in %r" % (c,))
    if c["class"] in seen or not 0 <= c["class"] < 60:
        fail("class %r repeated or out of range" % c["class"])
    seen.add(c["class"])
sizes = [c["size"] for c in classes]
if sizes != sorted(sizes):
    fail("size_classes not in size order: %r" % sizes)
stats_on = len(sys.argv) < 3 or sys.argv[2] != "0"
if stats_on:
    if len(classes) < 5:
        fail("size_classes has %d entries after mallocs in 5 classes" % len(classes))
    if not any(c["size"] == 64 and c["mallocs"] >= 1 for c in classes):
        fail("no class-64 entry after a malloc(64)")
    if counters["alloc_refill"] < 1:
        fail("alloc_refill is 0 after a malloc")
print("ok: %d counters, %d size classes" % (len(counters), len(classes)))
