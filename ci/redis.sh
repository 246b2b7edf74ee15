#!/usr/bin/env bash
# Redis against hakmem: Debian's Redis source built twice (MALLOC=libc linked with hakmem's
# libhakmem.a, and plain MALLOC=libc on glibc), a check that malloc in the first really is
# hakmem's, then Redis's own test suite on both builds. Fails only if hakmem fails a test that
# the glibc build does not fail (a crashed server counts as a failure of the running test).
#
#   bash ci/redis.sh                    the CI subset (REDIS_UNITS below, ~4 min a build)
#   HAKMEM_REDIS_FULL=1 bash ci/redis.sh   the whole ./runtest suite on both builds
#   HAKMEM_REDIS_UNITS="unit/expire unit/other" bash ci/redis.sh   units of your choice
#
# Work folder: build-redis/ (HAKMEM_REDIS_DIR); each run's output in build-redis/runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/deps.sh
# shellcheck source=ci/redis_lib.sh
source ci/redis_lib.sh
redis_init

# The CI subset: units that exercise how Redis allocates, frees, resizes and measures memory.
#  - every data type (string, incr, list, list-2, hash, set, zset, stream): encodings that
#    grow by realloc (listpack, intset, quicklist nodes, sds), conversions between encodings;
#  - keyspace, expire: dicts that grow and shrink, keys freed by expiry;
#  - lazyfree: objects freed on the background thread (a cross-thread free in hakmem);
#  - memefficiency: the used_memory/bytes ratio, which rests on malloc_usable_size (the test
#    asserts a minimum efficiency); its defrag tests skip themselves without jemalloc;
#  - maxmemory: eviction driven by used_memory, i.e. by malloc_usable_size of every block;
#  - querybuf: query buffers that grow and are trimmed (sdsRemoveFreeSpace, realloc down);
#  - info, other: INFO memory fields, DEBUG RELOAD / FLUSHALL / SWAPDB / resize of dicts;
#  - dump: DUMP/RESTORE/MIGRATE of every type (serialised copies, big allocations).
# Left out of CI for time: list-3 (one minute of ziplist fuzzing), the stream-cgroups,
# scripting and replication units; integration/ (AOF, RDB, replication: fork-heavy, slow).
# defrag tests need jemalloc and skip themselves. All of it runs with HAKMEM_REDIS_FULL=1.
REDIS_UNITS_CI=(
    unit/type/string unit/type/incr unit/type/list unit/type/list-2 unit/type/hash
    unit/type/set unit/type/zset unit/type/stream unit/keyspace unit/expire unit/lazyfree
    unit/memefficiency unit/maxmemory unit/querybuf unit/info unit/other unit/dump
)
CLIENTS=${HAKMEM_REDIS_CLIENTS:-2}

redis_fetch
redis_log "Redis source: $REDIS_SRC (Debian $REDIS_VERSION)"
redis_build_hakmem
redis_build
redis_verify

# run_suite BUILD OUTDIR: ./runtest on src/redis-server = BUILD; output and server logs in
# OUTDIR. Returns 0 always: the verdict comes from comparing the two runs.
run_suite() {
    local build=$1 out=$2 base pid rc=0 args=()
    redis_use "$build"
    rm -rf "$out"
    mkdir -p "$out"
    find "$REDIS_SRC/tests/tmp" -mindepth 1 -maxdepth 1 ! -name .gitignore -exec rm -rf {} +
    base=$(redis_free_port 400)
    if [ "${HAKMEM_REDIS_FULL:-0}" != 1 ]; then
        local u units
        read -r -a units <<<"${HAKMEM_REDIS_UNITS:-${REDIS_UNITS_CI[*]}}"
        for u in "${units[@]}"; do args+=(--single "$u"); done
    fi
    redis_log "runtest on the $build build: ports $base..$((base + 399)), $CLIENTS clients," \
        "$([ ${#args[@]} -eq 0 ] && echo "the whole suite" || echo "$((${#args[@]} / 2)) units")"
    local start=$SECONDS
    # Its own session, so that cleanup can stop it and every server it spawned at once.
    (cd "$REDIS_SRC" && TERM=dumb exec setsid ./runtest --clients "$CLIENTS" --baseport "$base" --portcount 400 \
        --durable --dont-clean --timeout 600 "${args[@]}") >"$out/runtest.log" 2>&1 &
    pid=$!
    REDIS_PGIDS+=("$pid")
    wait "$pid" || rc=$?
    redis_log "runtest ($build) exited $rc after $((SECONDS - start)) s:" \
        "$(grep -c '\[ok\]' "$out/runtest.log" || true) [ok] lines"
    # runtest stops its servers itself; anything left (it was killed) is stopped here.
    kill -TERM -- "-$pid" 2>/dev/null || true
    mv "$REDIS_SRC/tests/tmp" "$out/tmp"
    mkdir -p "$REDIS_SRC/tests/tmp"
    echo "$rc" >"$out/rc"
}

runs=$REDIS_WORK/runs
run_suite hakmem "$runs/hakmem"
run_suite glibc "$runs/glibc"
redis_use glibc
python3 ci/redis_tool.py compare "$runs/hakmem" "$runs/glibc"
