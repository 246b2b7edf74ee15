# preload_footprint: what loading the library costs every process before its first malloc.
# Every relocation the loader applies is a write into the library's data (a private page per
# process) and a record read from the file; hakmem's tables (the pagemap's top level, the
# counter names) are built to need none. Asserts at most 16 data relocations and at most
# 4 KiB of initialised writable data (.data + .data.rel.ro + .got): the pagemap's table as
# pointers alone was 1024 relocations and 8 KiB of .data. Counted: the relocations of data
# (RELATIVE, 64); calls into libc (JUMP_SLOT, GLOB_DAT) and TLS offsets are not tables.
# Then the pages: footprint_pages (argument 1) makes one small allocation and prints the
# process's anonymous kB (the stack left out), run in an empty environment without and with
# hakmem preloaded; with it the process may hold at most 28 KiB more (7 pages, measured on
# this project's Debian 12 VM): what any preloaded library costs (its relocated data and
# .data, and a page of the loader's records), hakmem's two .bss pages (the pagemap's top table
# with the globals before it, the first heap with the globals after it), the pagemap leaf, the
# first SuperSlab's header and the block's page, less glibc's one [heap] page. With the first
# heap in metadata memory it was 32 (docs/DESIGN-NOTES.md, "Nginx's memory, page by page").
# Skipped (77) where pages are not 4 KiB or where the kernel may back anonymous memory with
# huge pages unasked (THP "always", for any page size): a SuperSlab then costs 2 MiB.
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

pages_prog=$1
summary="preload_footprint: $relocs data relocations, $data bytes of initialised writable data"
if [ "$(getconf PAGESIZE)" != 4096 ]; then
    echo "$summary; pages not checked (page size $(getconf PAGESIZE))"
    exit 77
fi
thp=/sys/kernel/mm/transparent_hugepage
# the top level "always" (which the sizes set to "inherit" follow), or any size set to it
if grep -qs '\[always\]' "$thp/enabled" $thp/hugepages-*/enabled; then
    echo "$summary; pages not checked (transparent huge pages always)"
    exit 77
fi
plain=$(env -i "$pages_prog") || fail "footprint_pages failed without hakmem"
hak=$(env -i HAKMEM_DEBUG=1 LD_PRELOAD="$LIB" "$pages_prog" 2>"$W/report") || fail "footprint_pages failed under hakmem"
[ "$(served_reports "$W/report")" -ge 1 ] || fail "hakmem did not serve footprint_pages (no exit report with a heap)"
extra=$((hak - plain))
[ "$extra" -le 28 ] || fail "one malloc under hakmem holds $hak KiB of anonymous memory, $extra more than without it ($plain; want <= 28)"
echo "$summary; $extra KiB more anonymous memory than glibc for one malloc ($hak against $plain)"
