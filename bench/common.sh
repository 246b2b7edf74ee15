# common.sh -- shared by the bench/*.sh scripts (sourced, not run).
#
# Provides: HAK_ROOT, HAK_BUILD, ALLOCATORS, bench_log, bench_ensure_pkgs, bench_build,
# bench_preload_of ALLOCATOR, bench_header (markdown lines describing the machine/versions).
# HAKMEM_BENCH_BUILD overrides the build directory (default: <repo>/build-c).

HAK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HAK_BUILD=${HAKMEM_BENCH_BUILD:-$HAK_ROOT/build-c}
ALLOCATORS=(hakmem glibc jemalloc mimalloc tcmalloc)
BENCH_PKGS=(libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev libbenchmark-dev valgrind)

bench_log() { printf '%s\n' "$*" >&2; }

# Install the peer allocators and tools if any is missing. apt-get update runs only then.
bench_ensure_pkgs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    bench_log "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
}

# Configure (once) and build what the scripts need; incremental, so cheap when up to date.
bench_build() {
    if [ ! -f "$HAK_BUILD/CMakeCache.txt" ]; then
        cmake -S "$HAK_ROOT" -B "$HAK_BUILD" -DCMAKE_BUILD_TYPE=Release >&2
    fi
    cmake --build "$HAK_BUILD" -j"$(nproc)" --target alloc_loops hakmem >&2
}

# The path of the shared object to preload for ALLOCATOR (empty for glibc), found through
# dpkg (the package that owns the soname), with ldconfig as the fallback.
bench_preload_of() {
    local soname path
    case "$1" in
        glibc) echo ""; return 0 ;;
        hakmem) echo "$HAK_BUILD/libhakmem.so"; return 0 ;;
        jemalloc) soname=libjemalloc.so.2 ;;
        mimalloc) soname=libmimalloc.so.2 ;;
        tcmalloc) soname=libtcmalloc_minimal.so.4 ;;
        *) bench_log "unknown allocator $1"; return 1 ;;
    esac
    path=$(dpkg -S "*/$soname" 2>/dev/null | sed -n 's/^[^:]*: //p' | head -n1)
    [ -n "$path" ] && [ -e "$path" ] && { echo "$path"; return 0; }
    path=$(ldconfig -p | awk -v s="$soname" '$1 == s { print $NF; exit }')
    [ -n "$path" ] && [ -e "$path" ] && { echo "$path"; return 0; }
    bench_log "cannot find $soname"
    return 1
}

bench_pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }

# Markdown lines describing what was measured.
bench_header() {
    local rev cpu
    rev=$(git -C "$HAK_ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
    git -C "$HAK_ROOT" diff --quiet HEAD -- . ':!bench' 2>/dev/null || rev="$rev (+ uncommitted changes)"
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: ${cpu:-?}, $(nproc) CPUs, $(uname -r)"
    echo "- hakmem: $rev, build ${HAK_BUILD#"$HAK_ROOT"/} (Release)"
    echo "- glibc $(ldd --version 2>/dev/null | awk 'NR == 1 { print $NF }'), jemalloc $(bench_pkg_version libjemalloc2)," \
        "mimalloc $(bench_pkg_version libmimalloc2.0), tcmalloc_minimal $(bench_pkg_version libtcmalloc-minimal4)"
}
