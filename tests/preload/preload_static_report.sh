# preload_static_report: a program linked with libhakmem.a (no LD_PRELOAD) honours
# HAKMEM_DEBUG=1 like the preloaded library does: the exit report appears on stderr.
# arg: the statically linked program
. "$(dirname "$0")/lib.sh"
PROG=$1
env -u LD_PRELOAD HAKMEM_DEBUG=1 "$PROG" >"$W/out" 2>"$W/err" || { cat "$W/err" >&2; fail "the program failed"; }
grep -q '^hakmem: counters' "$W/err" ||
    fail "no exit report with HAKMEM_DEBUG=1 in a program linked with libhakmem.a: hak_init.c's constructor/destructor (and its fork handlers) were not linked in"
ti=$(awk '$1 == "thread_init" { print $2 }' "$W/err")
if [ "${HAKTEST_STATS:-1}" != 0 ]; then
    [ "${ti:-0}" -ge 2 ] || fail "thread_init = ${ti:-?} in the report, expected >= 2"
fi
echo "static report: thread_init=$ti"
