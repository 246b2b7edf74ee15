# lib.sh -- sourced by the preload test scripts (POSIX sh).
# Usage of a script: sh SCRIPT.sh LIBHAKMEM WORKDIR [ARGS...]
# run_pair runs a shell command line twice, plainly and with LD_PRELOAD=LIBHAKMEM (and
# HAKMEM_DEBUG=1), and asserts: both exit 0, their stdout is byte-identical, and hakmem
# printed at least MIN exit reports with thread_init >= 1 (i.e. it served that many of the
# processes of the command line).
set -eu

LIB=$1
W=$2
shift 2
TEST=$(basename "$0" .sh)

fail() {
    echo "FAIL [$TEST]: $*" >&2
    exit 1
}

[ -f "$LIB" ] || fail "no library at $LIB"
rm -rf "$W"
mkdir -p "$W"
export TMPDIR="$W"
export LC_ALL=C

# Exit reports on stderr (HAKMEM_DEBUG=1) with a non-zero thread_init (any report when the
# library was built without counters: HAKTEST_STATS=0).
served_reports() {
    if [ "${HAKTEST_STATS:-1}" = 0 ]; then
        grep -c '^hakmem: counters' "$1" || true
    else
        awk '/^hakmem: counters/ {n++} $1 == "thread_init" && $2 + 0 >= 1 {s++} END {print (s < n ? s : n) + 0}' "$1"
    fi
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# run_pair NAME MIN 'command line'
run_pair() {
    name=$1
    min=$2
    cmd=$3
    t0=$(now)
    rc=0
    env -u LD_PRELOAD -u HAKMEM_DEBUG sh -c "$cmd" >"$W/$name.plain.out" 2>"$W/$name.plain.err" || rc=$?
    [ $rc -eq 0 ] || { cat "$W/$name.plain.err" >&2; fail "$name: the plain run failed (exit $rc): $cmd"; }
    t1=$(now)
    rc=0
    env LD_PRELOAD="$LIB" HAKMEM_DEBUG=1 sh -c "$cmd" >"$W/$name.hak.out" 2>"$W/$name.hak.err" || rc=$?
    t2=$(now)
    if [ $rc -ne 0 ]; then
        grep -v '^ \|^hakmem: counters' "$W/$name.hak.err" | tail -20 >&2 || true
        fail "$name: the run under LD_PRELOAD=$LIB failed (exit $rc): $cmd"
    fi
    if ! cmp -s "$W/$name.plain.out" "$W/$name.hak.out"; then
        diff "$W/$name.plain.out" "$W/$name.hak.out" | head -20 >&2 || true
        fail "$name: output differs with hakmem preloaded (plain: $W/$name.plain.out, hakmem: $W/$name.hak.out)"
    fi
    [ -s "$W/$name.plain.out" ] || fail "$name: no output at all (plain run)"
    n=$(served_reports "$W/$name.hak.err")
    [ "$n" -ge "$min" ] || fail "$name: hakmem reported serving $n process(es), expected >= $min (was it preloaded?)"
    echo "$name: outputs equal ($(wc -c <"$W/$name.hak.out") bytes), hakmem served $n process(es);" \
        "plain $(elapsed "$t0" "$t1") s, hakmem $(elapsed "$t1" "$t2") s"
}

# A deterministic text input: N lines "word<TAB>number<TAB>text", from an LCG in awk.
gen_input() {
    awk -v n="$1" 'BEGIN {
        s = 12345; srand(1)
        for (i = 0; i < n; i++) {
            s = (s * 1103515245 + 12345) % 2147483648
            w = sprintf("w%05d", s % 50000)
            s = (s * 1103515245 + 12345) % 2147483648
            t = substr("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1, 1 + s % 60)
            printf "%s\t%d\t%s%d\n", w, s % 1000003, t, i % 977
        }
    }' >"$2"
}
