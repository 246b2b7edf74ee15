#!/usr/bin/env bash
# callgrind.sh -- instructions per malloc+free pair, for hakmem and the peer allocators.
#
# Runs `alloc_loops st ITERS 0` (no warm-up) under
#   valgrind --tool=callgrind --toggle-collect=bench_pair_loop
# once per allocator (hakmem by LD_PRELOAD of build-c/libhakmem.so, glibc with no preload,
# jemalloc, mimalloc, tcmalloc_minimal by LD_PRELOAD of their Debian shared objects), so
# only the st loop is counted: ITERS*64 pairs of malloc(16..256) + one write + free, the
# loop's own instructions included. Prints a markdown table and writes it to
# bench/results/callgrind.md.
#
# usage: bench/callgrind.sh [--iters N] [ALLOCATOR...]
#   --iters N   outer iterations (64 pairs each); default 200000 (12.8M pairs)
#   ALLOCATOR   any of: hakmem glibc jemalloc mimalloc tcmalloc (default: all five)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

iters=200000
allocs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --iters) iters=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) allocs+=("$1"); shift ;;
    esac
done
[ ${#allocs[@]} -eq 0 ] && allocs=("${ALLOCATORS[@]}")

bench_ensure_pkgs "${BENCH_PKGS[@]}"
bench_build
prog=$HAK_BUILD/bench/alloc_loops
results=$HAK_ROOT/bench/results
mkdir -p "$results"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Reference numbers quoted in the issue statement for such a loop (instructions per pair).
declare -A issue=([mimalloc]=78 [jemalloc]=85 [tcmalloc]=85 [glibc]=147)

rows=()
for a in "${allocs[@]}"; do
    pre=$(bench_preload_of "$a")
    out=$tmp/callgrind.out.$a
    bench_log "callgrind: $a (${pre:-no preload}), st $iters iterations ..."
    start=$SECONDS
    if ! line=$(env ${pre:+LD_PRELOAD="$pre"} valgrind --tool=callgrind \
        --toggle-collect=bench_pair_loop --callgrind-out-file="$out" \
        "$prog" st "$iters" 0 2>"$tmp/valgrind.$a.log"); then
        bench_log "callgrind: $a FAILED; valgrind log:"
        tail -n 20 "$tmp/valgrind.$a.log" >&2
        rows+=("| $a | failed | | | | | | | ${issue[$a]:-} |")
        continue
    fi
    pairs=$(sed -n 's/.* pairs=\([0-9]*\).*/\1/p' <<<"$line")
    total=$(awk '/^summary:/ && s == "" { s = $2 } /^totals:/ { t = $2 } END { print (s != "" ? s : t) }' "$out")
    # Inclusive cost of the calls made from the malloc(n) and free(blk[j]) lines of
    # bench_pair_loop (source annotation: "=> callee (Nx)" lines under the calling line), so
    # the split does not depend on the allocator's symbol names. PLT stubs and lazy binding
    # count as the allocator's; the rest of the total is the loop's own code.
    split=$(callgrind_annotate --auto=yes --inclusive=no --threshold=100 "$out" 2>/dev/null | awk '
        /=>/ { if (cur != "") { n = $1; gsub(",", "", n); c[cur] += n }; next }
        { cur = "" }
        /[^a-z_]malloc\(n\);/ { cur = "m" }
        /[^a-z_]free\(blk\[j\]\);/ { cur = "f" }
        END { print c["m"] + 0, c["f"] + 0 }') || split=""
    read -r mall fre <<<"${split:-0 0}"
    bench_log "callgrind: $a done in $((SECONDS - start)) s: Ir=$total pairs=$pairs"
    if [ -z "$total" ] || [ -z "$pairs" ] || [ "$pairs" -eq 0 ]; then
        rows+=("| $a | no data | | | | | | | ${issue[$a]:-} |")
        continue
    fi
    rows+=("$(awk -v a="$a" -v t="$total" -v p="$pairs" -v m="$mall" -v f="$fre" -v ref="${issue[$a]:-—}" 'BEGIN {
        if (m > 0 && f > 0) s = sprintf("%.1f | %.1f | %.1f | %.1f", m / p, f / p, (m + f) / p, (t - m - f) / p)
        else s = "? | ? | ? | ?"
        printf "| %s | **%.1f** | %s | %d | %d | %s |", a, t / p, s, t, p, ref }')")
done

{
    echo "# Instructions per malloc+free pair (callgrind)"
    echo
    bench_header
    echo "- loop: \`alloc_loops st $iters 0\` under \`valgrind --tool=callgrind --toggle-collect=bench_pair_loop\`;"
    echo "  $((iters * 64)) pairs of malloc(16..256, fixed pseudo-random sequence) + one write, freed 64 at a time in allocation order"
    echo "- Ir/pair = every instruction executed inside bench_pair_loop / pairs (the loop included);"
    echo "  malloc and free = inclusive cost per call of the calls made from the loop (PLT included),"
    echo "  loop = the rest (size lookup, the write, the pointer array, loop control)"
    echo "- issue statement = the instructions per pair quoted in the issue for such a loop"
    echo
    echo "| allocator | Ir/pair (loop incl.) | malloc | free | malloc+free | loop | total Ir | pairs | issue statement |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
} | tee "$results/callgrind.md"
