# install_test: install the build tree into a temporary prefix, then use the installed copy
# the ways docs/ADOPTING.md describes, and check each time that malloc really is hakmem's:
#   - the layout: libraries with their SONAME links, header, hakmem.pc, CMake package,
#     launcher; no build-tree paths and no private object libraries in what is installed
#   - pkg-config: a shared link (the binary needs the installed libhakmem.so.0) and a
#     --static link (fully static, also of a program that names no allocator function)
#   - a fresh CMake project with find_package(hakmem): hakmem::hakmem, hakmem::hakmem_static,
#     hakmem::api (the prefixed API beside glibc's malloc)
#   - the installed launcher from PATH: --json report, --debug, --lib, --version, LD_PRELOAD
#     prepended, the program's exit status passed through, errors
# "malloc is hakmem's": adopt.c checks usable sizes against hakmem's classes from the inside;
# from the outside, HAKMEM_DEBUG=json prints one report with a nonzero malloc count (any
# report when the counters are compiled out: HAKTEST_STATS=0), and nm/readelf/ldd.
# Usage: sh install_test.sh BUILD_DIR WORK_DIR CMAKE CC   (POSIX sh; the prefix is under TMPDIR)
set -eu

BUILD=$1
W=$2
CMAKE=$3
CC=$4
SRC=$(CDPATH='' cd -P -- "$(dirname -- "$0")" && pwd -P)
TOP=$(CDPATH='' cd -P -- "$SRC/../.." && pwd -P)
STATS=${HAKTEST_STATS:-1}

fail() {
    echo "FAIL [install_test]: $*" >&2
    exit 1
}
step() { echo "-- $*"; }

rm -rf "$W"
mkdir -p "$W"
W=$(CDPATH='' cd -P -- "$W" && pwd -P)
BUILD=$(CDPATH='' cd -P -- "$BUILD" && pwd -P)
# The prefix lies outside the build and source trees, so that a path into either in what is
# installed is a leak; it goes at exit (logs and programs stay in WORK_DIR).
T=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-install.XXXXXX")
trap 'rm -rf "$T"' EXIT
P=$T/prefix
export LC_ALL=C
unset DESTDIR LD_PRELOAD HAKMEM_DEBUG HAKMEM_LIB PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR || true

# report FILE WHAT: FILE (a program's stderr) holds exactly one HAKMEM_DEBUG=json report,
# with at least one malloc counted when the counters are compiled in.
report() {
    n=$(grep -c '{"hakmem":' "$1" || true)
    [ "$n" = 1 ] || { cat "$1" >&2; fail "$2: $n HAKMEM_DEBUG=json reports on stderr, expected 1 (is malloc hakmem's?)"; }
    m=$(grep -o '"mallocs":[0-9]*' "$1" | awk -F: '{ s += $2 } END { print s + 0 }')
    if [ "$STATS" != 0 ] && [ "$m" -lt 1 ]; then
        fail "$2: the report counts $m mallocs"
    fi
    echo "   $2: json report, $m mallocs"
}

# run_json NAME EXPECT PROGRAM [ARGS]: runs it with HAKMEM_DEBUG=json, expects EXPECT on
# stdout and exit 0, checks the report. run_launched: the same with HAKMEM_DEBUG unset (the
# launcher's --json must set it).
run_json() { run_report json "$@"; }
run_launched() { run_report "" "$@"; }
run_report() {
    debug=$1
    name=$2
    expect=$3
    shift 3
    rc=0
    if [ -n "$debug" ]; then
        HAKMEM_DEBUG=$debug "$@" >"$W/$name.out" 2>"$W/$name.err" || rc=$?
    else
        "$@" >"$W/$name.out" 2>"$W/$name.err" || rc=$?
    fi
    [ $rc = 0 ] || { cat "$W/$name.err" >&2; fail "$name: exit status $rc"; }
    grep -qx "$expect" "$W/$name.out" || { cat "$W/$name.out" "$W/$name.err" >&2; fail "$name: no '$expect' line"; }
    report "$W/$name.err" "$name"
}

defines_malloc() { nm "$1" | grep -q ' T malloc$'; }
# hakmem's malloc is linked in: malloc defined, and hak_malloc beside it (a fully static
# program defines glibc's malloc too, so malloc alone proves nothing)
has_hakmem_malloc() { defines_malloc "$1" && nm "$1" | grep -q ' T hak_malloc$'; }
needs_libhakmem() { readelf -d "$1" | grep -q 'NEEDED.*\[libhakmem\.so\.0\]'; }
# the libhakmem.so.0 the dynamic loader picks for a program
loaded_lib() { ldd "$1" | awk '$1 == "libhakmem.so.0" { print $3 }'; }

step "cmake --install $BUILD --prefix $P"
"$CMAKE" --install "$BUILD" --prefix "$P" >"$W/install.log" 2>&1 || { cat "$W/install.log" >&2; fail "cmake --install failed"; }

step "layout"
so=$(find "$P" -name libhakmem.so)
[ -n "$so" ] || fail "no libhakmem.so under $P"
LIBDIR=$(dirname "$so")
for f in bin/hakmem include/hakmem.h; do
    [ -f "$P/$f" ] || fail "$f not installed"
done
[ -x "$P/bin/hakmem" ] || fail "bin/hakmem is not executable"
for f in libhakmem.so.0 libhakmem.a libhakmem_api.a pkgconfig/hakmem.pc \
    cmake/hakmem/hakmemConfig.cmake cmake/hakmem/hakmemConfigVersion.cmake cmake/hakmem/hakmemTargets.cmake; do
    [ -f "$LIBDIR/$f" ] || fail "$LIBDIR/$f not installed"
done
if ! [ -L "$LIBDIR/libhakmem.so" ] || ! [ -L "$LIBDIR/libhakmem.so.0" ]; then fail "libhakmem.so and libhakmem.so.0 are not the SONAME links"; fi
readelf -d "$LIBDIR/libhakmem.so" | grep -q 'SONAME.*\[libhakmem\.so\.0\]' || fail "libhakmem.so has no SONAME libhakmem.so.0"
if readelf -d "$LIBDIR/libhakmem.so" | grep -q 'RPATH\|RUNPATH'; then fail "the installed libhakmem.so keeps an RPATH"; fi
# What a user's build reads must not point back here, nor name the module object libraries.
leaks=$(grep -rlF -e "$BUILD" -e "$TOP" "$LIBDIR/cmake" "$LIBDIR/pkgconfig" "$P/bin" || true)
[ -z "$leaks" ] || fail "build-tree or source-tree paths in: $leaks"
if grep -rqwE 'hak_(base|superslab|remote|large|tls)' "$LIBDIR/cmake"; then
    grep -rnwE 'hak_(base|superslab|remote|large|tls)' "$LIBDIR/cmake" >&2
    fail "the exported targets name the private object libraries"
fi
echo "   libdir $LIBDIR"

step "pkg-config"
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
[ "$(pkg-config --variable=prefix hakmem)" = "$P" ] || fail "hakmem.pc: prefix $(pkg-config --variable=prefix hakmem), expected $P"
[ "$(pkg-config --variable=libdir hakmem)" = "$LIBDIR" ] || fail "hakmem.pc: libdir $(pkg-config --variable=libdir hakmem), expected $LIBDIR"
[ "$(pkg-config --modversion hakmem)" = "$(sed -n 's/^#define HAKMEM_VERSION "\(.*\)"/\1/p' "$P/include/hakmem.h")" ] ||
    fail "hakmem.pc's version is not the header's"
# shellcheck disable=SC2046 # the flags are meant to split
"$CC" -o "$W/pc_shared" "$SRC/adopt.c" $(pkg-config --cflags --libs hakmem) -Wl,-rpath,"$LIBDIR" ||
    fail "cc adopt.c \$(pkg-config --cflags --libs hakmem) failed"
needs_libhakmem "$W/pc_shared" || fail "pc_shared does not need libhakmem.so.0"
[ "$(loaded_lib "$W/pc_shared")" = "$LIBDIR/libhakmem.so.0" ] || fail "pc_shared loads '$(loaded_lib "$W/pc_shared")', not the installed copy"
run_json pc_shared "adopt ok" "$W/pc_shared"
# Under --as-needed (Ubuntu's default) a program that names no allocator function would drop
# libhakmem.so, and keep glibc's malloc, but for hakmem.pc's --no-as-needed.
# shellcheck disable=SC2046
"$CC" -o "$W/pc_asneeded" -Wl,--as-needed "$SRC/bare.c" $(pkg-config --cflags --libs hakmem) -Wl,-rpath,"$LIBDIR" ||
    fail "cc -Wl,--as-needed bare.c \$(pkg-config --cflags --libs hakmem) failed"
needs_libhakmem "$W/pc_asneeded" || fail "pc_asneeded (-Wl,--as-needed) does not need libhakmem.so.0"
run_json pc_asneeded "bare ok" "$W/pc_asneeded"
for prog in adopt bare; do
    # shellcheck disable=SC2046
    "$CC" -static -o "$W/pc_static_$prog" "$SRC/$prog.c" $(pkg-config --static --cflags --libs hakmem) ||
        fail "cc -static $prog.c \$(pkg-config --static --cflags --libs hakmem) failed"
    if readelf -d "$W/pc_static_$prog" 2>/dev/null | grep -q NEEDED; then fail "pc_static_$prog is not static"; fi
    has_hakmem_malloc "$W/pc_static_$prog" || fail "pc_static_$prog does not define malloc (hakmem's was not linked in)"
done
run_json pc_static_adopt "adopt ok" "$W/pc_static_adopt"
run_json pc_static_bare "bare ok" "$W/pc_static_bare"

step "CMake: find_package(hakmem) in a fresh project"
"$CMAKE" -S "$SRC/consumer" -B "$W/consumer" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_C_COMPILER="$CC" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_BUILD_TYPE=Release >"$W/consumer.log" 2>&1 ||
    { cat "$W/consumer.log" >&2; fail "configuring the consumer project failed"; }
grep -q "hakmem_DIR=$LIBDIR/cmake/hakmem " "$W/consumer.log" || { grep hakmem_DIR "$W/consumer.log" >&2; fail "find_package did not find the installed copy"; }
"$CMAKE" --build "$W/consumer" >>"$W/consumer.log" 2>&1 || { cat "$W/consumer.log" >&2; fail "building the consumer project failed"; }
C=$W/consumer
needs_libhakmem "$C/adopt_shared" || fail "adopt_shared (hakmem::hakmem) does not need libhakmem.so.0"
[ "$(loaded_lib "$C/adopt_shared")" = "$LIBDIR/libhakmem.so.0" ] || fail "adopt_shared loads '$(loaded_lib "$C/adopt_shared")', not the installed copy"
for prog in adopt_static bare_static; do
    if needs_libhakmem "$C/$prog"; then fail "$prog (hakmem::hakmem_static) needs libhakmem.so.0"; fi
    has_hakmem_malloc "$C/$prog" || fail "$prog (hakmem::hakmem_static) does not define malloc"
done
if defines_malloc "$C/api_user"; then fail "api_user (hakmem::api) defines malloc: the prefixed API must leave glibc's"; fi
run_json cm_adopt_shared "adopt ok" "$C/adopt_shared"
run_json cm_adopt_static "adopt ok" "$C/adopt_static"
run_json cm_bare_static "bare ok" "$C/bare_static"
"$C/api_user" >"$W/api_user.out" 2>&1 || { cat "$W/api_user.out" >&2; fail "api_user failed"; }
grep -qx "api_user ok" "$W/api_user.out" || fail "api_user: no 'api_user ok'"

step "the launcher from PATH"
PATH=$P/bin:$PATH
export PATH
[ "$(command -v hakmem)" = "$P/bin/hakmem" ] || fail "hakmem on PATH is $(command -v hakmem)"
[ "$(hakmem --lib)" = "$LIBDIR/libhakmem.so" ] || fail "hakmem --lib says '$(hakmem --lib)', expected $LIBDIR/libhakmem.so"
[ "$(hakmem --version)" = "hakmem $(pkg-config --modversion hakmem)" ] || fail "hakmem --version says '$(hakmem --version)'"
"$CC" -o "$W/bare_plain" "$SRC/bare.c" || fail "cc bare.c failed"
HAKMEM_DEBUG=json "$W/bare_plain" >/dev/null 2>"$W/plain.err" || fail "bare_plain failed"
if grep -q hakmem "$W/plain.err"; then fail "a plain program printed a hakmem report: the launcher check would prove nothing"; fi
run_launched launcher_json "bare ok" hakmem --json -- "$W/bare_plain"
printf '3\n1\n2\n' >"$W/numbers"
run_launched launcher_sort "3" hakmem --json sort -r "$W/numbers"
hakmem --debug "$W/bare_plain" >/dev/null 2>"$W/launcher_debug.err" || fail "hakmem --debug bare_plain failed"
grep -q '^hakmem: counters' "$W/launcher_debug.err" || fail "hakmem --debug printed no text report"
rc=0
hakmem -- sh -c 'exit 7' 2>/dev/null || rc=$?
[ $rc = 7 ] || fail "hakmem -- sh -c 'exit 7' exited $rc"
rc=0
hakmem --json -- "$W/pc_shared" 5 >/dev/null 2>"$W/launcher_rc.err" || rc=$?
[ $rc = 5 ] || fail "hakmem --json -- pc_shared 5 exited $rc"
report "$W/launcher_rc.err" launcher_rc
# shellcheck disable=SC2016 # the inner shell expands it
got=$(LD_PRELOAD=libm.so.6 hakmem -- sh -c 'printf %s "$LD_PRELOAD"')
[ "$got" = "$LIBDIR/libhakmem.so:libm.so.6" ] || fail "LD_PRELOAD under the launcher is '$got', expected the library in front of libm.so.6"
rc=0
hakmem --json >/dev/null 2>"$W/nocmd.err" || rc=$?
if [ $rc != 2 ] || ! grep -q 'no command' "$W/nocmd.err"; then fail "hakmem without a command: exit $rc, $(cat "$W/nocmd.err")"; fi
rc=0
HAKMEM_LIB=$W/nowhere hakmem true 2>"$W/nolib.err" || rc=$?
if [ $rc != 1 ] || ! grep -q 'no libhakmem.so' "$W/nolib.err"; then fail "HAKMEM_LIB=nowhere: exit $rc, $(cat "$W/nolib.err")"; fi
rc=0
hakmem -- "$W/no-such-program" 2>"$W/noprog.err" || rc=$?
[ $rc = 127 ] || fail "a missing program: exit $rc, expected 127"

echo "install_test: all checks passed (prefix $P)"
