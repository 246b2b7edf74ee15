#!/usr/bin/env bash
# Nginx with hakmem against Nginx with glibc malloc: wrk on loopback against both builds of
# ci/nginx_lib.sh (same source, same configure, libhakmem.a linked in or not), serving a
# 1 KiB and a 64 KiB static file with keep-alive. Rounds are interleaved (each round runs
# every build x file once; the build order alternates), medians and ratios of requests/s,
# and RSS (master + worker, VmRSS from /proc) right after each run. One worker process and
# `wrk -t1`: on a 2-CPU machine wrk and nginx share the CPUs, so more of either only
# measures the contention. Not in CI (takes minutes). Writes bench/results/nginx.md and .csv.
# Usage: bench/nginx_bench.sh [rounds (5)] [seconds per run (10)] [connections (16)]
set -euo pipefail
source "$(dirname "$0")/../ci/nginx_lib.sh"
rounds=${1:-5} secs=${2:-10} conns=${3:-16}
trap 'ngx_cleanup; [[ -n ${tmp:-} ]] && rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

ngx_build wrk
tmp=$(mktemp -d /tmp/hakmem-nginx-bench.XXXXXX)
chmod 755 "$tmp"   # workers run as nobody when the master is root
mkdir -p "$tmp/html"
files=(f1k f64k)
head -c 1024 /dev/urandom >"$tmp/html/f1k"
head -c 65536 /dev/urandom >"$tmp/html/f64k"

builds=(hakmem glibc)
declare -A port=()
for b in "${builds[@]}"; do
  mkdir -p "$tmp/$b" && ln -s "$tmp/html" "$tmp/$b/html"
  # access log off here: one write(2) per request in both builds would only dilute the
  # difference; the CI check runs with it on
  ngx_start "$b" "$b" "$tmp/$b" 1 'access_log off;'
  port[$b]=$NGX_PORT
done

# With 2 CPUs or more, the worker runs on CPU 0 and wrk on CPU 1: left to the scheduler, the
# two moved between the CPUs and the per-round ratios of one build to the other spread from
# 0.88 to 1.12 (bench/results/nginx.md of 2026-11-26 00:32).
pin_wrk=()
if (($(nproc) >= 2)) && command -v taskset >/dev/null; then
  for b in "${builds[@]}"; do
    for k in $(ngx_children "${NGX_PID[$b]}"); do taskset -apc 0 "$k" >/dev/null; done
  done
  pin_wrk=(taskset -c 1)
fi

rss_of() {  # rss_of BUILD [FIELD of /proc/PID/status]: master + workers, KiB
  local pid=${NGX_PID[$1]} sum k
  sum=$(ngx_rss_kib "$pid" "${2:-VmRSS}")
  for k in $(ngx_children "$pid"); do sum=$((sum + $(ngx_rss_kib "$k" "${2:-VmRSS}"))); done
  echo "$sum"
}

run_wrk() {  # run_wrk BUILD FILE SECONDS -> requests/s
  local out rps
  out=$("${pin_wrk[@]}" wrk -t1 -c"$conns" -d"$3"s "http://127.0.0.1:${port[$1]}/$2")
  grep -q 'Non-2xx' <<<"$out" && ngx_die "$1 $2: non-2xx answers: $out"
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  [[ -n $rps ]] || ngx_die "$1 $2: no Requests/sec in wrk's output: $out"
  echo "$rps"
}

csv=$NGX_ROOT/bench/results/nginx.csv
mkdir -p "$(dirname "$csv")"
echo "round,build,file,requests_per_s,rss_kib,rss_anon_kib" >"$csv.tmp"
for f in "${files[@]}"; do for b in "${builds[@]}"; do run_wrk "$b" "$f" 2 >/dev/null; done; done  # warm-up
for ((r = 1; r <= rounds; r++)); do
  for f in "${files[@]}"; do
    order=("${builds[@]}")
    ((r % 2)) || order=(glibc hakmem)
    for b in "${order[@]}"; do
      rps=$(run_wrk "$b" "$f" "$secs")
      rss=$(rss_of "$b") anon=$(rss_of "$b" RssAnon)
      ngx_log "round $r $f $b: $rps requests/s, RSS $rss KiB (anonymous $anon KiB)"
      echo "$r,$b,$f,$rps,$rss,$anon" >>"$csv.tmp"
    done
  done
done
for b in "${builds[@]}"; do ngx_stop "$b" || ngx_die "$b: unclean stop"; done
for b in "${builds[@]}"; do
  if grep -E 'exited on signal|\[(alert|crit|emerg)\]' "$tmp/$b/logs/error.log"; then ngx_die "$b: see above"; fi
done
mv "$csv.tmp" "$csv"

rev=$(git -C "$NGX_ROOT" rev-parse --short HEAD)
git -C "$NGX_ROOT" diff --quiet HEAD -- . ':!bench/results' || rev+=" (with uncommitted changes)"
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
python3 - "$csv" >"$NGX_ROOT/bench/results/nginx.md" <<PY
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def col(b, f, k): return [float(r[k]) for r in rows if r["build"] == b and r["file"] == f]
print("# Nginx: hakmem against glibc malloc (wrk, loopback)")
print()
print("- date: $(date -u '+%Y-%m-%d %H:%M UTC')")
print("- machine: $cpu, $(nproc) CPUs, Linux $(uname -r); shared with other jobs (noisy)")
print("- hakmem: $rev, Release, libhakmem.a linked in (--whole-archive); nginx $(basename "$NGX_SRC"), Debian source package, same configure for both (ci/nginx_lib.sh)")
print("- wrk $(dpkg-query -W -f='${Version}' wrk), glibc $(dpkg-query -W -f='${Version}' libc6)")
print("- command: \`bench/nginx_bench.sh $rounds $secs $conns\`: per run \`wrk -t1 -c$conns -d${secs}s http://127.0.0.1:PORT/FILE\` (keep-alive), FILE = 1 KiB or 64 KiB of random bytes; $rounds rounds, interleaved (every build x file once per round, build order alternating), after a 2 s warm-up each")
print("- nginx: 1 worker process, sendfile on, access log off, bound to 127.0.0.1; wrk -t1 and one worker because with 2 CPUs wrk and nginx share them; $( ((${#pin_wrk[@]})) && echo 'the worker pinned to CPU 0 and wrk to CPU 1 (taskset)' || echo 'not pinned')")
print("- RSS: VmRSS of master + worker right after each run, KiB; in brackets its anonymous part (RssAnon: heap, data, stacks), the rest being file pages (the binary, libc), whose count moves with the page cache; medians over the rounds; raw runs in nginx.csv")
print()
print("| file | hakmem req/s | glibc req/s | hakmem / glibc | hakmem RSS KiB | glibc RSS KiB | hakmem / glibc RSS |")
print("|---|---:|---:|---:|---:|---:|---:|")
for f in ("f1k", "f64k"):
    h, g = statistics.median(col("hakmem", f, "requests_per_s")), statistics.median(col("glibc", f, "requests_per_s"))
    hr, gr = statistics.median(col("hakmem", f, "rss_kib")), statistics.median(col("glibc", f, "rss_kib"))
    ha, ga = statistics.median(col("hakmem", f, "rss_anon_kib")), statistics.median(col("glibc", f, "rss_anon_kib"))
    name = {"f1k": "1 KiB", "f64k": "64 KiB"}[f]
    print(f"| {name} | {h:.0f} | {g:.0f} | {h / g:.3f} | {hr:.0f} ({ha:.0f}) | {gr:.0f} ({ga:.0f}) | {hr / gr:.3f} ({ha / ga:.3f}) |")
print()
print("Spread over the rounds (min - max requests/s), and hakmem / glibc within each round:")
print()
print("| file | hakmem | glibc | per-round ratios |")
print("|---|---:|---:|---|")
for f in ("f1k", "f64k"):
    s = [f"{min(col(b, f, 'requests_per_s')):.0f} - {max(col(b, f, 'requests_per_s')):.0f}" for b in ("hakmem", "glibc")]
    ratios = " ".join(f"{h / g:.2f}" for h, g in zip(col("hakmem", f, "requests_per_s"), col("glibc", f, "requests_per_s")))
    print(f"| {f} | {s[0]} | {s[1]} | {ratios} |")
PY
cat "$NGX_ROOT/bench/results/nginx.md"
