#!/usr/bin/env bash
# compare_loops.sh -- alloc_loops st / mt2 / xthread under hakmem, glibc, jemalloc,
# mimalloc and tcmalloc_minimal, interleaved so that machine noise spreads evenly.
#
# Each round runs every mode under every allocator once; within a round the allocator
# order is round-robin, starting one allocator later each round. Writes
#   bench/results/loops.csv  round,allocator,mode,ops_per_s   (one row per run)
#   bench/results/loops.md   median ops/s per allocator and mode, ratio to the best median
# and prints the markdown. One progress line per run goes to stderr.
#
# usage: bench/compare_loops.sh [--rounds N] [--quick] [--modes "st mt2 xthread"]
#                               [--allocators "hakmem glibc ..."] [--timeout SECONDS]
#   --rounds N   rounds (default 5)
#   --quick      3 rounds with a fifth of the iterations (a smoke test, not for reporting)
#   --timeout S  per-run limit (default 120 s); a run that fails or times out is recorded
#                with ops_per_s "fail" and left out of the medians
# Iterations (64 pairs each) per thread: ST_ITERS (default 800000), MT2_ITERS (400000),
# XTHREAD_ITERS (200000) from the environment.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

rounds=5
quick=0
modes=(st mt2 xthread)
allocs=("${ALLOCATORS[@]}")
run_timeout=120
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --modes) read -r -a modes <<<"$2"; shift 2 ;;
        --allocators) read -r -a allocs <<<"$2"; shift 2 ;;
        --timeout) run_timeout=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) bench_log "unknown argument $1"; exit 1 ;;
    esac
done
declare -A iters=([st]=${ST_ITERS:-800000} [mt2]=${MT2_ITERS:-400000} [xthread]=${XTHREAD_ITERS:-200000})
if [ "$quick" -eq 1 ]; then
    rounds=3
    for m in "${!iters[@]}"; do iters[$m]=$((iters[$m] / 5)); done
fi

bench_ensure_pkgs "${BENCH_PKGS[@]}"
bench_build
prog=$HAK_BUILD/bench/alloc_loops
results=$HAK_ROOT/bench/results
mkdir -p "$results"
csv=$results/loops.csv
md=$results/loops.md
tmpcsv=$results/loops.csv.tmp
errlog=$(mktemp)
trap 'rm -f "$errlog"' EXIT

declare -A preload
for a in "${allocs[@]}"; do preload[$a]=$(bench_preload_of "$a"); done

echo "round,allocator,mode,ops_per_s" >"$tmpcsv"
n=${#allocs[@]}
total=$((rounds * ${#modes[@]} * n))
run=0
failures=0
for ((r = 1; r <= rounds; r++)); do
    for m in "${modes[@]}"; do
        for ((k = 0; k < n; k++)); do
            a=${allocs[$(((r - 1 + k) % n))]}
            run=$((run + 1))
            pre=${preload[$a]}
            rc=0
            line=$(env ${pre:+LD_PRELOAD="$pre"} timeout "$run_timeout" \
                "$prog" "$m" "${iters[$m]}" 2>"$errlog") || rc=$?
            ops=$(sed -n 's/.* ops_per_s=\([0-9.e+]*\).*/\1/p' <<<"$line")
            if [ "$rc" -ne 0 ] || [ -z "$ops" ]; then
                failures=$((failures + 1))
                ops=fail
                why="exit $rc"
                [ "$rc" -eq 124 ] && why="timed out after ${run_timeout}s"
                bench_log "[$run/$total] round $r $m $a: FAILED ($why) $(tr '\n' ' ' <"$errlog" | cut -c1-300)"
            else
                secs=$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' <<<"$line")
                bench_log "$(awk -v i="$run" -v t="$total" -v r="$r" -v m="$m" -v a="$a" -v o="$ops" -v s="$secs" \
                    'BEGIN { printf "[%d/%d] round %d %-7s %-8s %8.2f Mops/s (%.2f s)", i, t, r, m, a, o / 1e6, s }')"
            fi
            echo "$r,$a,$m,$ops" >>"$tmpcsv"
        done
    done
done
mv "$tmpcsv" "$csv"

# Medians, spread and ratios (POSIX awk: no asort).
summary=$(awk -F, -v order="${allocs[*]}" -v modes="${modes[*]}" '
    NR == 1 { next }
    $4 == "fail" { fails[$2 "," $3]++; next }
    { k = $2 "," $3; cnt[k]++; v[k, cnt[k]] = $4 + 0 }
    function median(k,    n, i, j, t, a) {
        n = cnt[k]
        for (i = 1; i <= n; i++) a[i] = v[k, i]
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        lo[k] = a[1]; hi[k] = a[n]
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        na = split(order, al, " "); nm = split(modes, ml, " ")
        for (j = 1; j <= nm; j++) {
            best[ml[j]] = 0
            for (i = 1; i <= na; i++) {
                k = al[i] "," ml[j]
                med[k] = cnt[k] ? median(k) : -1
                if (med[k] > best[ml[j]]) best[ml[j]] = med[k]
            }
        }
        hdr = "| allocator |"; sep = "|---|"
        for (j = 1; j <= nm; j++) { hdr = hdr " " ml[j] " Mops/s | " ml[j] " ratio |"; sep = sep "---:|---:|" }
        print hdr; print sep
        for (i = 1; i <= na; i++) {
            line = "| " al[i] " |"
            for (j = 1; j <= nm; j++) {
                k = al[i] "," ml[j]
                if (med[k] < 0) { line = line " fail | — |"; continue }
                r = med[k] / best[ml[j]]
                line = line sprintf(" %.2f | %s%.2f%s |", med[k] / 1e6, r == 1 ? "**" : "", r, r == 1 ? "**" : "")
            }
            print line
        }
        print ""
        print "Spread over the rounds (min – max Mops/s; failed runs):"
        print ""
        hdr = "| allocator |"; sep = "|---|"
        for (j = 1; j <= nm; j++) { hdr = hdr " " ml[j] " |"; sep = sep "---:|" }
        print hdr; print sep
        for (i = 1; i <= na; i++) {
            line = "| " al[i] " |"
            for (j = 1; j <= nm; j++) {
                k = al[i] "," ml[j]
                s = cnt[k] ? sprintf("%.1f – %.1f", lo[k] / 1e6, hi[k] / 1e6) : "—"
                if (fails[k]) s = s sprintf(" (%d failed)", fails[k])
                line = line " " s " |"
            }
            print line
        }
    }' "$csv")

{
    echo "# alloc_loops throughput: median over $rounds rounds"
    echo
    bench_header
    echo "- modes (one op = one malloc+free pair; sizes 16..256 from a fixed pseudo-random sequence, one write per block):"
    echo "  st = one thread, batches of 64 then free (\`alloc_loops st ${iters[st]}\`);"
    echo "  mt2 = two threads each running the st loop (\`alloc_loops mt2 ${iters[mt2]}\`, ops of both threads);"
    echo "  xthread = producer mallocs, consumer frees through an SPSC ring (\`alloc_loops xthread ${iters[xthread]}\`)"
    echo "- runs interleaved: each round runs every allocator once per mode, round-robin order starting one later each round"
    echo "- ratio = median / best median in that mode (1.00 = fastest); raw runs in loops.csv"
    [ "$failures" -gt 0 ] && echo "- **$failures run(s) failed**: see the spread table and loops.csv"
    echo
    echo "$summary"
} | tee "$md"
