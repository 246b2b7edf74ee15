#!/usr/bin/env bash
# redis-benchmark and a memory cycle on three builds of the same Redis source (Debian's):
#   hakmem   MALLOC=libc, libhakmem.a linked in (ci/redis_lib.sh)
#   glibc    MALLOC=libc
#   jemalloc MALLOC=jemalloc USE_SYSTEM_JEMALLOC=yes: Debian's libjemalloc2, the allocator (and
#            the build switch) of Debian's redis-server package
# Each round starts a fresh server of each build in turn (order rotated every round) on a free
# loopback port and runs
#   throughput: redis-benchmark -P 16 -c 50 -r 100000 on SET, GET, LPUSH (N requests each) and
#               LRANGE_100 (N/5), requests per second;
#   memory:     DEBUG POPULATE of 5 groups of string keys (16 B .. 400 KB values), DEL of every
#               other key of each group, then INFO memory 0.5 s, 2 s and 12 s later
#               (used_memory, used_memory_rss, mem_fragmentation_ratio).
# Results: bench/results/redis.md (medians, ratios to jemalloc) and redis.csv (every sample).
#
# Usage: bench/redis_bench.sh [--rounds R] [--requests N] [--out PREFIX]   (not run by CI)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=5
requests=1000000
out=bench/results/redis
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --requests) requests=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "usage: $0 [--rounds R] [--requests N] [--out PREFIX]" >&2; exit 2 ;;
    esac
done
cmdline="bench/redis_bench.sh --rounds $rounds --requests $requests"

bash ci/deps.sh
# shellcheck source=ci/redis_lib.sh
source ci/redis_lib.sh
redis_init
redis_pkgs libjemalloc-dev
redis_fetch
redis_build_hakmem
redis_build
redis_verify

# The jemalloc build: its own copy of the source (other CFLAGS, so other objects).
jdir=$REDIS_WORK/jemalloc
if [ ! -x "$jdir/src/redis-server" ]; then
    rm -rf "$jdir"
    cp -a "$REDIS_SRC" "$jdir"
    make -C "$jdir" distclean >/dev/null 2>&1 || true
    redis_log "building Redis with MALLOC=jemalloc USE_SYSTEM_JEMALLOC=yes"
    make -C "$jdir" -j"$(nproc)" MALLOC=jemalloc USE_SYSTEM_JEMALLOC=yes USE_SYSTEMD=no BUILD_TLS=no \
        redis-server >"$REDIS_WORK/make-jemalloc.log" 2>&1 ||
        { tail -n 30 "$REDIS_WORK/make-jemalloc.log" >&2; redis_die "jemalloc build failed"; }
fi
grep -q "libjemalloc\.so\.2" <<<"$(ldd "$jdir/src/redis-server")" || redis_die "jemalloc build does not link libjemalloc.so.2"

src=$REDIS_SRC/src
cli=$src/redis-cli
declare -A bin=([hakmem]=$src/redis-server.hakmem [glibc]=$src/redis-server.glibc [jemalloc]=$jdir/src/redis-server)
builds=(hakmem glibc jemalloc)
csv=$out.csv
tmpcsv=$out.csv.tmp
echo "round,build,metric,value" >"$tmpcsv"
allocator_of=()

# INFO memory fields as "used rss frag".
meminfo() {
    "$cli" -p "$1" info memory | tr -d '\r' |
        awk -F: '$1 == "used_memory" { u = $2 } $1 == "used_memory_rss" { r = $2 }
                 $1 == "mem_fragmentation_ratio" { f = $2 } END { print u, r, f }'
}

# DEL of every other key of the groups, sent as RESP through redis-cli --pipe.
del_half() {
    awk -v groups="$1" 'BEGIN {
        n = split(groups, g, " ")
        for (i = 1; i <= n; i++) {
            split(g[i], gc, ":")
            for (k = 0; k < gc[2]; k += 2) {
                key = gc[1] ":" k
                printf "*2\r\n$3\r\nDEL\r\n$%d\r\n%s\r\n", length(key), key
            }
        }
    }' | "$cli" -p "$2" --pipe >/dev/null
}

# name:count:size for DEBUG POPULATE (keys "name:0" .. "name:count-1").
groups="a:300000:16 b:150000:128 c:40000:1024 d:4000:16384 e:100:400000"

for ((r = 1; r <= rounds; r++)); do
    order=("${builds[@]:$(((r - 1) % 3))}" "${builds[@]:0:$(((r - 1) % 3))}")
    for b in "${order[@]}"; do
        port=$(redis_free_port 1)
        dir=$REDIS_WORK/bench-$b
        rm -rf "$dir"
        redis_start "${bin[$b]}" "$port" "$dir" --enable-debug-command local
        pid=$REDIS_LAST_PID
        allocator_of+=("$b=$("$cli" -p "$port" info memory | tr -d '\r' | sed -n 's/^mem_allocator://p')")
        {
            "$src/redis-benchmark" -h 127.0.0.1 -p "$port" -P 16 -c 50 -r 100000 -n "$requests" \
                -t set,get,lpush --csv
            "$src/redis-benchmark" -h 127.0.0.1 -p "$port" -P 16 -c 50 -r 100000 -n "$((requests / 5))" \
                -t lrange_100 --csv
        } 2>/dev/null | awk -F'","' -v r="$r" -v b="$b" '
            { gsub(/"/, "") }
            $1 ~ /^(SET|GET|LPUSH|LRANGE_100)/ && $1 !~ /needed/ {
                split($0, f, ","); name = f[1]; sub(/ .*/, "", name)
                print r "," b "," name "_rps," f[2]
            }' >>"$tmpcsv"
        "$cli" -p "$port" flushall >/dev/null
        for g in $groups; do
            IFS=: read -r name count size <<<"$g"
            "$cli" -p "$port" debug populate "$count" "$name" "$size" >/dev/null
        done
        sleep 0.5  # INFO's used_memory_rss is sampled by serverCron (every 100 ms at hz 10)
        read -r u rss frag < <(meminfo "$port")
        printf '%s,%s,filled_used,%s\n%s,%s,filled_rss,%s\n%s,%s,filled_frag,%s\n' \
            "$r" "$b" "$u" "$r" "$b" "$rss" "$r" "$b" "$frag" >>"$tmpcsv"
        del_half "$(echo "$groups" | awk '{ for (i = 1; i <= NF; i++) { split($i, g, ":"); printf "%s:%s ", g[1], g[2] } }')" "$port"
        for t in 0.5 2 12; do
            case $t in 0.5) sleep 0.5 ;; 2) sleep 1.5 ;; 12) sleep 10 ;; esac
            read -r u rss frag < <(meminfo "$port")
            printf '%s,%s,half_%ss_used,%s\n%s,%s,half_%ss_rss,%s\n%s,%s,half_%ss_frag,%s\n' \
                "$r" "$b" "$t" "$u" "$r" "$b" "$t" "$rss" "$r" "$b" "$t" "$frag" >>"$tmpcsv"
        done
        redis_stop "$pid" "$port"
        redis_log "round $r/$rounds: $b done"
    done
done
mv "$tmpcsv" "$csv"

{
    echo "# Redis: hakmem, glibc and jemalloc builds of the same source"
    echo
    bench_rev=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
    git diff --quiet HEAD -- . ':!bench' ':!ci' 2>/dev/null || bench_rev="$bench_rev (+ uncommitted changes)"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) CPUs, $(uname -r); shared and noisy"
    echo "- hakmem: $bench_rev (Release, libhakmem.a linked in whole)"
    echo "- Redis: Debian source package redis $REDIS_VERSION, built here with each allocator; allocators (INFO mem_allocator): $(printf '%s\n' "${allocator_of[@]}" | sort -u | tr '\n' ' ')"
    echo "- jemalloc: Debian libjemalloc2 $(dpkg-query -W -f='${Version}' libjemalloc2 2>/dev/null); glibc $(ldd --version | awk 'NR == 1 { print $NF }')"
    echo "- command: \`$cmdline\` ($rounds rounds, builds interleaved, order rotated; medians)"
    echo "- client: redis-benchmark (glibc build) on the same 2 CPUs, 127.0.0.1, \`-P 16 -c 50 -r 100000\`, $requests requests (LRANGE_100: $((requests / 5)))"
    echo "- memory cycle: DEBUG POPULATE $groups (name:keys:value bytes), DEL of every other key, INFO memory"
    echo
    python3 bench/redis_report.py "$csv"
} >"$out.md"
cat "$out.md"
