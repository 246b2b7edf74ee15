#!/usr/bin/env bash
# Nginx's memory under each allocator: a fresh start of each build (1 worker), `wrk -t1 -c16`
# on a 1 KiB file for a few seconds, then at once (before hakmem's idle purge, which starts
# after HAKMEM_DECAY_MS, 1 s) RssAnon and VmRSS of master + worker from /proc/PID/status,
# and stop. Builds: hakmem (libhakmem.a linked in) and glibc, from
# ci/nginx_lib.sh; jemalloc, mimalloc and tcmalloc_minimal by LD_PRELOAD of their Debian
# shared objects into the glibc build. Rounds are interleaved (every build once per round,
# the order rotating); medians, ranges, and ratios to glibc. The anonymous part (heap, data,
# .bss, stacks) is the allocator's doing; the file pages (the binary, libc, a preloaded
# library) move by some 300 KiB between starts with the page cache. Page by page:
# tools/rss_pages.py, docs/DESIGN-NOTES.md ("Nginx's memory, page by page").
# Not in CI (a few minutes). Writes bench/results/nginx-rss.md and .csv.
# Usage: bench/nginx_rss.sh [rounds (5)] [seconds of load (2)]
set -euo pipefail
source "$(dirname "$0")/../ci/nginx_lib.sh"
source "$(dirname "$0")/common.sh"
rounds=${1:-5} secs=${2:-2}
trap 'ngx_cleanup; [[ -n ${tmp:-} ]] && rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

ngx_build wrk libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev
tmp=$(mktemp -d /tmp/hakmem-nginx-rss.XXXXXX)
chmod 755 "$tmp"   # workers run as nobody when the master is root
mkdir -p "$tmp/html"
head -c 1024 /dev/urandom >"$tmp/html/f1k"

builds=(hakmem glibc jemalloc mimalloc tcmalloc)
declare -A lib=()
for b in jemalloc mimalloc tcmalloc; do
  lib[$b]=$(bench_preload_of "$b") || ngx_die "no shared object for $b"
  # exec keeps the PID, so ngx_start's master PID is nginx's
  printf '#!/bin/sh\nLD_PRELOAD=%q exec %q "$@"\n' "${lib[$b]}" "${NGX_BIN[glibc]}" >"$tmp/nginx-$b"
  chmod 755 "$tmp/nginx-$b"
  NGX_BIN[$b]=$tmp/nginx-$b
done

sum_of() {  # sum_of BUILD FIELD: master + workers, KiB
  local pid=${NGX_PID[$1]} sum k
  sum=$(ngx_rss_kib "$pid" "$2")
  for k in $(ngx_children "$pid"); do sum=$((sum + $(ngx_rss_kib "$k" "$2"))); done
  echo "$sum"
}

csv=$NGX_ROOT/bench/results/nginx-rss.csv
mkdir -p "$(dirname "$csv")"
raw=$tmp/runs.csv  # moved into bench/results only when every run went through
echo "round,build,rss_anon_kib,rss_kib,requests_per_s" >"$raw"
for ((r = 1; r <= rounds; r++)); do
  n=${#builds[@]}
  for ((i = 0; i < n; i++)); do
    b=${builds[$(((i + r - 1) % n))]}
    mkdir -p "$tmp/$b"
    [[ -e $tmp/$b/html ]] || ln -s "$tmp/html" "$tmp/$b/html"
    ngx_start "$b" "$b" "$tmp/$b" 1 'access_log off;'
    # a preload that failed leaves nginx on glibc with only a warning on stderr
    if [[ -n ${lib[$b]:-} ]]; then
      for k in "${NGX_PID[$b]}" $(ngx_children "${NGX_PID[$b]}"); do
        grep -qF "${lib[$b]}" "/proc/$k/maps" || ngx_die "$b: ${lib[$b]} is not mapped in nginx $k"
      done
    fi
    out=$(wrk -t1 -c16 -d"$secs"s "http://127.0.0.1:$NGX_PORT/f1k")
    grep -q 'Non-2xx' <<<"$out" && ngx_die "$b: non-2xx answers: $out"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    anon=$(sum_of "$b" RssAnon) rss=$(sum_of "$b" VmRSS)
    ngx_log "round $r $b: RssAnon $anon KiB, VmRSS $rss KiB ($rps requests/s)"
    echo "$r,$b,$anon,$rss,$rps" >>"$raw"
    ngx_stop "$b" || ngx_die "$b: unclean stop"
    if grep -E 'exited on signal|\[(alert|crit|emerg)\]' "$tmp/$b/logs/error.log"; then ngx_die "$b: see above"; fi
  done
done
mv "$raw" "$csv"

rev=$(git -C "$NGX_ROOT" rev-parse --short HEAD)
git -C "$NGX_ROOT" diff --quiet HEAD -- . ':!bench/results' || rev+=" (with uncommitted changes)"
python3 - "$csv" >"$NGX_ROOT/bench/results/nginx-rss.md" <<PY
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
builds = ["hakmem", "glibc", "jemalloc", "mimalloc", "tcmalloc"]
def col(b, k): return [int(r[k]) for r in rows if r["build"] == b]
print("# Nginx's memory: hakmem against glibc, jemalloc, mimalloc and tcmalloc")
print()
print("- date: $(date -u '+%Y-%m-%d %H:%M UTC')")
print("- machine: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) CPUs, Linux $(uname -r); shared with other jobs")
print("- hakmem: $rev, Release, libhakmem.a linked in; nginx $(basename "$NGX_SRC"), Debian source package, one configure for all (ci/nginx_lib.sh)")
print("- glibc $(bench_pkg_version libc6), jemalloc $(bench_pkg_version libjemalloc2), mimalloc $(bench_pkg_version libmimalloc2.0), tcmalloc_minimal $(bench_pkg_version libtcmalloc-minimal4) (LD_PRELOAD into the glibc build: ${lib[jemalloc]}, ${lib[mimalloc]}, ${lib[tcmalloc]})")
print("- command: \`bench/nginx_rss.sh $rounds $secs\`: per round and build, a fresh start (1 worker, access log off, 127.0.0.1), \`wrk -t1 -c16 -d${secs}s\` on a 1 KiB file, then at once (before hakmem's idle purge) RssAnon and VmRSS of master + worker (/proc/PID/status), then stop; $rounds rounds, the build order rotating")
print("- RssAnon is the allocator's part (heap, data and .bss, stacks); VmRSS adds the file pages (the binary, libc, a preloaded library), which move by some 300 KiB between starts. Raw runs in nginx-rss.csv.")
print()
print("| build | RssAnon KiB, median (range) | / glibc | VmRSS KiB, median (range) | / glibc |")
print("|---|---:|---:|---:|---:|")
ga, gv = statistics.median(col("glibc", "rss_anon_kib")), statistics.median(col("glibc", "rss_kib"))
for b in builds:
    a, v = col(b, "rss_anon_kib"), col(b, "rss_kib")
    ma, mv = statistics.median(a), statistics.median(v)
    print(f"| {b} | {ma:.0f} ({min(a)}-{max(a)}) | {ma / ga:.3f} | {mv:.0f} ({min(v)}-{max(v)}) | {mv / gv:.3f} |")
PY
cat "$NGX_ROOT/bench/results/nginx-rss.md"
