# preload_sort: GNU sort on 1.5 million generated lines (two threads, temp files), with and
# without hakmem, outputs compared by checksum.
. "$(dirname "$0")/lib.sh"
gen_input 1500000 "$W/input.txt"
[ "$(wc -l <"$W/input.txt")" -eq 1500000 ] || fail "input generation failed"
run_pair sort_keys 2 "sort --parallel=2 -S 40M -t '	' -k2,2n -k1,1 '$W/input.txt' | cksum"
run_pair sort_unique 2 "sort --parallel=2 -u '$W/input.txt' | cksum"
