# shellcheck shell=bash
# redis_lib.sh -- sourced by ci/redis.sh and bench/redis_bench.sh: fetch Debian's Redis source,
# build it against hakmem and against glibc (and jemalloc for the benchmark), check which
# malloc each binary really uses, and start/stop servers on free loopback ports.
#
# Settings: HAKMEM_REDIS_DIR (work folder, default <repo>/build-redis; ignored by git).
# Every server started here is recorded, and redis_cleanup (installed as the EXIT trap by
# redis_init) stops it and any server left by ./runtest that runs a binary of this tree.

REDIS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REDIS_WORK=${HAKMEM_REDIS_DIR:-$REDIS_ROOT/build-redis}
REDIS_HAKMEM_BUILD=$REDIS_WORK/hakmem            # hakmem release build (libhakmem.a)
REDIS_MAKE_ARGS=(MALLOC=libc USE_SYSTEMD=no BUILD_TLS=no V=1)
REDIS_PIDS=()                                    # servers this script started
REDIS_PGIDS=()                                   # process groups of runtest runs
REDIS_TOOL=$REDIS_ROOT/ci/redis_tool.py

redis_log() { printf '[redis] %s\n' "$*" >&2; }
redis_die() { printf '[redis] FAIL: %s\n' "$*" >&2; exit 1; }

# Install Debian packages that are missing (apt-get update only then).
redis_pkgs() { bash "$(dirname "${BASH_SOURCE[0]}")/deps.sh" "$@"; }

# Debian's Redis source, unpacked (patches applied) under $REDIS_WORK; sets REDIS_SRC.
redis_fetch() {
    bash "$(dirname "${BASH_SOURCE[0]}")/debsrc.sh"  # deb-src entries, apt-get update when new
    # tcl runs the test suite; procps (ps) is used by a few tests; the build itself needs
    # only make and gcc: Redis builds hiredis, lua, linenoise and hdr_histogram from deps/.
    redis_pkgs dpkg-dev tcl procps
    if [ -z "$(apt-cache showsrc redis 2>/dev/null)" ]; then
        apt-get update -qq
    fi
    local version dir
    version=$(apt-cache showsrc redis | awk '/^Version:/ { print $2 }' | sort -V | tail -n1)
    [ -n "$version" ] || redis_die "apt-cache showsrc redis gave no version"
    dir=$REDIS_WORK/src-${version//[:~]/_}
    if [ ! -f "$dir/.unpacked" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        redis_log "apt-get source redis=$version"
        (cd "$dir" && apt-get source -qq "redis=$version" >/dev/null 2>&1) ||
            (cd "$dir" && apt-get source "redis=$version") || redis_die "apt-get source redis failed"
        touch "$dir/.unpacked"
    fi
    REDIS_SRC=$(find "$dir" -mindepth 1 -maxdepth 1 -type d -name 'redis-*' | head -n1)
    [ -x "$REDIS_SRC/runtest" ] || redis_die "no Redis source tree under $dir"
    REDIS_VERSION=$version
}

# hakmem, release, in its own build folder.
redis_build_hakmem() {
    cmake -S "$REDIS_ROOT" -B "$REDIS_HAKMEM_BUILD" -DCMAKE_BUILD_TYPE=Release \
        -DHAKMEM_BUILD_TESTS=OFF -DHAKMEM_BUILD_BENCH=OFF -DHAKMEM_BUILD_STRESS=OFF >/dev/null
    cmake --build "$REDIS_HAKMEM_BUILD" -j"$(nproc)" --target hakmem_static >/dev/null
    [ -f "$REDIS_HAKMEM_BUILD/libhakmem.a" ] || redis_die "no libhakmem.a in $REDIS_HAKMEM_BUILD"
}

# Redis with MALLOC=libc, objects built once, redis-server linked twice:
#   src/redis-server.glibc   glibc's malloc
#   src/redis-server.hakmem  the same objects with libhakmem.a linked in whole
# Relinking goes through the Makefile's own link rule with REDIS_LD overridden; FINAL_LDFLAGS
# (which the Makefile compares to decide on a full rebuild) is left as it was.
redis_build() {
    local src=$REDIS_SRC/src log=$REDIS_WORK/make.log
    redis_log "building Redis $REDIS_VERSION (MALLOC=libc)"
    make -C "$REDIS_SRC" -j"$(nproc)" "${REDIS_MAKE_ARGS[@]}" >"$log" 2>&1 ||
        { tail -n 30 "$log" >&2; redis_die "make failed (log: $log)"; }
    rm -f "$src/redis-server"
    make -C "$src" "${REDIS_MAKE_ARGS[@]}" redis-server >>"$log" 2>&1 || redis_die "glibc link failed"
    mv -f "$src/redis-server" "$src/redis-server.glibc"
    local ld="\$(CC) \$(FINAL_LDFLAGS) -Wl,--whole-archive $REDIS_HAKMEM_BUILD/libhakmem.a -Wl,--no-whole-archive"
    make -C "$src" "${REDIS_MAKE_ARGS[@]}" REDIS_LD="$ld" redis-server >>"$log" 2>&1 ||
        { tail -n 30 "$log" >&2; redis_die "hakmem link failed (log: $log)"; }
    mv -f "$src/redis-server" "$src/redis-server.hakmem"
    redis_use glibc
}

# Make src/redis-server (and the names ./runtest runs it under) the build NAME.
# A new inode each time (rm first): a server still running the old file keeps its text.
redis_use() {
    local src=$REDIS_SRC/src b
    [ -x "$src/redis-server.$1" ] || redis_die "no src/redis-server.$1"
    for b in redis-server redis-sentinel redis-check-aof redis-check-rdb; do
        rm -f "$src/$b"
        cp "$src/redis-server.$1" "$src/$b"
    done
}

# A server: redis_start BINARY PORT DIR [extra redis-server args...]; loopback only, no
# persistence; waits until it answers PING. Sets REDIS_LAST_PID.
redis_start() {
    local bin=$1 port=$2 dir=$3 i
    shift 3
    mkdir -p "$dir"
    "$bin" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --dir "$dir" --logfile "$dir/server.log" "$@" >"$dir/stdout" 2>"$dir/stderr" &
    REDIS_LAST_PID=$!
    REDIS_PIDS+=("$REDIS_LAST_PID")
    for ((i = 0; i < 200; i++)); do
        [ "$("$REDIS_SRC/src/redis-cli" -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        kill -0 "$REDIS_LAST_PID" 2>/dev/null || break
        sleep 0.05
    done
    cat "$dir/stderr" "$dir/server.log" >&2 2>/dev/null
    redis_die "$bin did not start on 127.0.0.1:$port"
}

# redis_stop PID PORT: SHUTDOWN NOSAVE, then wait for the process (exit handlers run).
redis_stop() {
    local pid=$1 port=$2 i
    "$REDIS_SRC/src/redis-cli" -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid" 2>/dev/null || true; }
    wait "$pid" 2>/dev/null || true
}

# A free loopback port (and its +10000 twin, for cluster buses).
redis_free_port() { python3 "$REDIS_TOOL" free-range "${1:-1}"; }

# Stop what we started: our servers, runtest's process groups, and any process still running
# a redis-server binary of this source tree (found by /proc/PID/exe, killed by PID).
redis_cleanup() {
    local pid g exe
    for pid in "${REDIS_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    for g in "${REDIS_PGIDS[@]}"; do
        kill -TERM -- "-$g" 2>/dev/null
    done
    if [ -n "${REDIS_SRC:-}" ]; then
        sleep 0.2
        for exe in /proc/[0-9]*/exe; do
            pid=${exe#/proc/}
            pid=${pid%/exe}
            case "$(readlink "$exe" 2>/dev/null)" in
                "$REDIS_SRC"/src/redis-*|"$REDIS_WORK"/*/redis-server*) kill -KILL "$pid" 2>/dev/null ;;
            esac
        done
    fi
    return 0
}

redis_on_exit() {
    local rc=$?
    set +e  # a server already gone is not an error here
    redis_cleanup
    exit "$rc"
}

redis_init() {
    trap redis_on_exit EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$REDIS_WORK"
}

# Which malloc does each build use? Symbols first, then the running server.
#   hakmem: malloc/free/realloc/calloc/malloc_usable_size defined in the executable (T),
#           exported for glibc's own calls, no libhakmem.so needed; a server started with
#           HAKMEM_DEBUG=json reports at shutdown at least the mallocs of 20000 keys.
#   glibc:  malloc undefined, bound to GLIBC; the same probe writes no hakmem report.
redis_verify() {
    local src=$REDIS_SRC/src s port dir pid hsyms hdyn gdyn libs
    # Into variables first: "nm | grep -q" fails under pipefail when grep stops reading early.
    hsyms=$(nm "$src/redis-server.hakmem")
    hdyn=$(nm -D "$src/redis-server.hakmem")
    gdyn=$(nm -D "$src/redis-server.glibc")
    for s in malloc free calloc realloc malloc_usable_size posix_memalign aligned_alloc memalign; do
        grep -qE "^[0-9a-f]+ T $s\$" <<<"$hsyms" || redis_die "redis-server.hakmem does not define $s (nm)"
        grep -qE " T $s\$" <<<"$hdyn" ||
            redis_die "redis-server.hakmem does not export $s for glibc's internal calls (nm -D)"
    done
    for s in malloc free calloc realloc malloc_usable_size; do  # the ones Redis calls
        grep -qE " U $s@GLIBC" <<<"$gdyn" || redis_die "redis-server.glibc does not take $s from glibc (nm -D)"
    done
    grep -q ' T hak_malloc$' <<<"$hsyms" || redis_die "redis-server.hakmem has no hak_malloc: not hakmem's malloc"
    libs=$(ldd "$src/redis-server.hakmem")
    ! grep -qE 'jemalloc|tcmalloc|mimalloc|hakmem' <<<"$libs" ||
        redis_die "redis-server.hakmem links another allocator: $libs"
    redis_log "nm: redis-server.hakmem defines and exports the malloc family; redis-server.glibc imports it from GLIBC"
    for s in hakmem glibc; do
        port=$(redis_free_port 1)
        dir=$REDIS_WORK/probe-$s
        rm -rf "$dir"
        HAKMEM_DEBUG=json redis_start "$src/redis-server.$s" "$port" "$dir" --enable-debug-command local
        pid=$REDIS_LAST_PID
        "$src/redis-cli" -p "$port" debug populate 20000 probe 100 >/dev/null
        [ "$("$src/redis-cli" -p "$port" dbsize)" = 20000 ] || redis_die "$s: populate failed"
        grep -q '^mem_allocator:libc' <<<"$("$src/redis-cli" -p "$port" info memory)" ||
            redis_die "$s: INFO mem_allocator is not libc"
        redis_stop "$pid" "$port"
        if [ "$s" = hakmem ]; then
            python3 "$REDIS_TOOL" probe-json "$dir/stderr" 20000 || redis_die "hakmem build does not allocate through hakmem"
        else
            python3 "$REDIS_TOOL" no-report "$dir/stderr" || redis_die "glibc build loads hakmem"
        fi
    done
}
