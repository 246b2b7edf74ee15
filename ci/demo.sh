#!/usr/bin/env bash
# The main job (README): install what is needed, build hakmem, run a real program under it
# with HAKMEM_DEBUG=1 (the counters print at exit), then compare it side by side with
# glibc, jemalloc, mimalloc and tcmalloc: interleaved rounds, medians, ratios.
# Usage: ci/demo.sh [rounds]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
bash ci/deps.sh --peers
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DHAKMEM_BUILD_TESTS=OFF -DHAKMEM_BUILD_BENCH=OFF >/dev/null
cmake --build build -j"$(nproc)" --target hakmem >/dev/null
lib=$PWD/build/libhakmem.so
py=/usr/bin/python3
export PYTHONMALLOC=malloc

echo "== python3 (PYTHONMALLOC=malloc) tools/pyworkload.py under hakmem, HAKMEM_DEBUG=1"
LD_PRELOAD=$lib HAKMEM_DEBUG=1 $py tools/pyworkload.py

find_so() { dpkg -L "$1" 2>/dev/null | grep -E "/$2\$" | head -1; }
declare -A pre=(
  [glibc]=""
  [jemalloc]=$(find_so libjemalloc2 'libjemalloc.so.2')
  [mimalloc]=$(find_so libmimalloc2.0 'libmimalloc.so.2')
  [tcmalloc]=$(find_so libtcmalloc-minimal4 'libtcmalloc_minimal.so.4')
  [hakmem]=$lib
)
names=(hakmem glibc jemalloc mimalloc tcmalloc)
out=$(mktemp)
echo "== side by side: $rounds interleaved rounds"
for ((r = 0; r < rounds; r++)); do
  for ((i = 0; i < ${#names[@]}; i++)); do
    a=${names[(i + r) % ${#names[@]}]}
    line=$(LD_PRELOAD=${pre[$a]} $py tools/pyworkload.py)
    echo "round $((r + 1)) $a: $line" >&2
    echo "$a $line" >>"$out"
  done
done
$py - "$out" <<'PY'
import statistics, sys
rows = {}
sums = set()
for line in open(sys.argv[1]):
    a, _, chk, _, sec, _, kib = line.split()
    rows.setdefault(a, []).append((float(sec), int(kib)))
    sums.add(chk)
print("checksums agree:", "yes" if len(sums) == 1 else "NO (%s)" % sums)
med = {a: (statistics.median(s for s, _ in v), statistics.median(k for _, k in v)) for a, v in rows.items()}
best_t = min(t for t, _ in med.values())
best_m = min(m for _, m in med.values())
print("| allocator | median seconds | x best | median peak RSS MiB | x best |")
print("|---|---|---|---|---|")
for a in sorted(med, key=lambda a: med[a][0]):
    t, m = med[a]
    print("| %s | %.3f | %.2f | %.1f | %.2f |" % (a, t, t / best_t, m / 1024, m / best_m))
PY
rm -f "$out"
