#!/usr/bin/env bash
# Instructions per request of Redis under callgrind, hakmem and jemalloc builds of
# bench/redis_bench.sh (run that first: it builds them under build-redis/). Each server runs
# under callgrind; `redis-benchmark -P 16 -c 50 -r 100000 -t TEST` sends 20000 requests to
# warm up, then N; the totals include start-up and the warm-up. Prints the total and the top
# allocator functions of each. Not run by CI.
# Usage: bench/redis_callgrind.sh [TEST (lpush)] [N (200000)]
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-lpush} n=${2:-200000}
source ci/redis_lib.sh
redis_init
redis_fetch >/dev/null
src=$REDIS_SRC/src
declare -A bin=([hakmem]=$src/redis-server.hakmem [jemalloc]=$REDIS_WORK/jemalloc/src/redis-server)
tmp=$(mktemp -d /tmp/hakmem-redis-cg.XXXXXX)
trap 'redis_cleanup; rm -rf "$tmp"' EXIT
for b in hakmem jemalloc; do
    [ -x "${bin[$b]}" ] || redis_die "${bin[$b]} missing: run bench/redis_bench.sh first"
    port=$(redis_free_port 1)
    valgrind --tool=callgrind --callgrind-out-file="$tmp/$b.out" "${bin[$b]}" --port "$port" --bind 127.0.0.1 \
        --save '' --appendonly no --daemonize no --dir "$tmp" >"$tmp/$b.log" 2>&1 &
    pid=$!
    REDIS_PIDS+=("$pid")
    for ((i = 0; i < 300; i++)); do [ "$("$src/redis-cli" -p "$port" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
    "$src/redis-benchmark" -p "$port" -P 16 -c 50 -r 100000 -n 20000 -t "$t" -q >/dev/null 2>&1
    "$src/redis-benchmark" -p "$port" -P 16 -c 50 -r 100000 -n "$n" -t "$t" -q >/dev/null 2>&1
    "$src/redis-cli" -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$pid" || true
    echo "== $b: $t, $n requests after 20000 to warm up"
    callgrind_annotate --inclusive=no "$tmp/$b.out" 2>/dev/null | grep -E '^ *[0-9,]+ ' |
        grep -E 'TOTALS|malloc|free|hak_|usable|je_|realloc' | awk 'NR <= 8' | cut -c1-120
done
