"""A deterministic allocation-heavy Python workload for the LD_PRELOAD tests: dicts, lists,
sets, json round trips, string joins and slicing, bytes, a few threads. Prints results only;
run with and without LD_PRELOAD=libhakmem.so, the outputs must be equal. Exits non-zero if
one of its own checks fails."""
import hashlib
import json
import random
import sys
import threading
from collections import Counter, defaultdict


def check(cond, what):
    if not cond:
        print("workload check failed: " + what, file=sys.stderr)
        sys.exit(3)


def digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


rng = random.Random(12345)
out = []

# dicts of lists of strings, grown and shrunk
d = {}
for i in range(120000):
    k = "key%06d" % rng.randrange(40000)
    d.setdefault(k, []).append("v" * rng.randrange(1, 40) + str(i))
for k in list(d)[::3]:
    del d[k]
out.append(("dict", len(d), sum(len(v) for v in d.values()), digest(sorted(d.items())[:500])))

# json round trips of nested structures, big and small
docs = []
for i in range(3000):
    doc = {
        "id": i,
        "name": "item-%d" % i,
        "tags": ["t%d" % rng.randrange(100) for _ in range(rng.randrange(1, 12))],
        "attrs": {"a%d" % j: rng.random() for j in range(rng.randrange(0, 8))},
        "blob": "x" * rng.randrange(0, 3000),
    }
    docs.append(doc)
text = json.dumps(docs, sort_keys=True)
back = json.loads(text)
check(back == docs, "json round trip")
out.append(("json", len(text), digest(back[::97])))

# string joins, splits, replaces; bytes
words = ["".join(chr(97 + rng.randrange(26)) for _ in range(rng.randrange(1, 12))) for _ in range(200000)]
big = " ".join(words)
parts = big.split(" ")
check(parts == words, "split/join")
up = big.upper().replace("A", "<a>")
out.append(("str", len(big), len(up), hashlib.sha256(up.encode()).hexdigest()[:16]))
counts = Counter(words)
out.append(("counter", len(counts), counts.most_common(5)))
b = bytearray()
for w in words[:50000]:
    b += w.encode() * 3
out.append(("bytes", len(b), hashlib.sha256(bytes(b)).hexdigest()[:16]))

# sets and sorting
s1 = {rng.randrange(10**6) for _ in range(150000)}
s2 = {rng.randrange(10**6) for _ in range(150000)}
out.append(("sets", len(s1 & s2), len(s1 | s2), sum(sorted(s1 ^ s2)[:1000])))


# threads: each builds its own structures from its own seed; results joined in order
def work(idx, results):
    r = random.Random(idx)
    groups = defaultdict(list)
    for i in range(60000):
        groups[r.randrange(500)].append(("%x" % r.getrandbits(64)) * r.randrange(1, 4))
    flat = sorted(x for g in groups.values() for x in g)
    results[idx] = (len(flat), hashlib.sha256("".join(flat[:2000]).encode()).hexdigest()[:16],
                    json.loads(json.dumps({str(k): len(v) for k, v in groups.items()}))["7"])


results = [None] * 4
threads = [threading.Thread(target=work, args=(i, results)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
check(all(r is not None for r in results), "threads finished")
out.append(("threads", results))

for line in out:
    print(line)
