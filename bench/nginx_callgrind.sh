#!/usr/bin/env bash
# Instructions and simulated cache misses per request of Nginx under callgrind, for the
# hakmem and glibc builds of ci/nginx_lib.sh: one process (master_process off), the default
# test config of ci/nginx_lib.sh (access log on, no thread pool), `wrk -t1 -c16` for SECONDS
# against FILE (1 KiB or 64 KiB of random bytes). Requests are counted from the access log.
# Deterministic where wall-clock runs on a shared 2-CPU machine are not. Not run by CI.
# Usage: bench/nginx_callgrind.sh [f1k|f64k] [seconds (5)]
set -euo pipefail
source "$(dirname "$0")/../ci/nginx_lib.sh"
file=${1:-f1k} secs=${2:-5}
trap 'ngx_cleanup; [[ -n ${tmp:-} ]] && rm -rf "$tmp"' EXIT
ngx_install_pkgs valgrind
ngx_build wrk
tmp=$(mktemp -d /tmp/hakmem-nginx-cg.XXXXXX)
chmod 755 "$tmp"
for b in hakmem glibc; do
  pfx=$tmp/$b
  mkdir -p "$pfx/html" "$pfx/logs"
  head -c 1024 /dev/urandom >"$pfx/html/f1k"
  head -c 65536 /dev/urandom >"$pfx/html/f64k"
  port=$(ngx_free_port)
  ngx_write_conf "$pfx" "$port" 1 ''
  sed -i 's/^master_process on;/master_process off;/; /^thread_pool/d; /location \/aio\//d' "$pfx/nginx.conf"
  valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file="$pfx/cg.out" \
    "${NGX_BIN[$b]}" -p "$pfx" -c "$pfx/nginx.conf" >"$pfx/valgrind.log" 2>&1 &
  vpid=$!
  for ((i = 0; i < 150; i++)); do curl -s -o /dev/null "http://127.0.0.1:$port/$file" && break; sleep 0.2; done
  wrk -t1 -c16 -d"$secs"s "http://127.0.0.1:$port/$file" >"$pfx/wrk.log"
  kill -QUIT "$vpid"
  wait "$vpid" || true
  n=$(wc -l <"$pfx/logs/access.log")
  python3 - "$b" "$file" "$n" "$pfx/cg.out" <<'PY'
import sys
b, f, n, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
events = totals = None
for line in open(path):
    if line.startswith("events:"): events = line.split()[1:]
    if line.startswith(("summary:", "totals:")) and totals is None: totals = [int(x) for x in line.split()[1:]]
print(f"{b} {f}: {n} requests; per request: " + " ".join(f"{e}={v / n:.1f}" for e, v in zip(events, totals)))
PY
done
