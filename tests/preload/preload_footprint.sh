# preload_footprint: what loading the library costs every process before its first malloc.
# Every relocation the loader applies is a write into the library's data (a private page per
# process) and a record read from the file; hakmem's tables (the pagemap's top level, the
# counter names) are built to need none. Asserts at most 16 data relocations and at most
# 4 KiB of initialised writable data (.data + .data.rel.ro + .got): the pagemap's table as
# pointers alone was 1024 relocations and 8 KiB of .data. Counted: the relocations of data
# (RELATIVE, 64); calls into libc (JUMP_SLOT, GLOB_DAT) and TLS offsets are not tables.
. "$(dirname "$0")/lib.sh"
command -v readelf >/dev/null || fail "readelf (binutils) not found"
relocs=$(readelf -rW "$LIB" | grep -cE '^[0-9a-f]+ +[0-9a-f]+ +R_[A-Z0-9_]+_(RELATIVE|64|ABS64) ' || true)
# packed relative relocations (-z pack-relative-relocs): each word of .relr.dyn stands for
# one or more, so its word count is a lower bound
for size in $(readelf -SW "$LIB" | sed 's/^ *\[ *[0-9]*\] *//' | awk '$1 == ".relr.dyn" { print $5 }'); do
    relocs=$((relocs + 0x$size / 8))
done
[ "$relocs" -le 16 ] || fail "$relocs data relocations in $LIB (want <= 16)"
data=0
for size in $(readelf -SW "$LIB" | sed 's/^ *\[ *[0-9]*\] *//' | awk '$1 == ".data" || $1 == ".data.rel.ro" || $1 == ".got" { print $5 }'); do
    data=$((data + 0x$size))
done
[ "$data" -le 4096 ] || fail "$data bytes of initialised writable data in $LIB (want <= 4096)"
echo "preload_footprint: $relocs data relocations, $data bytes of initialised writable data"
