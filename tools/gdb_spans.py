# gdb_spans.py -- every span of every heap in a running process, with its blocks and pages.
#
# Usage: gdb -p PID -batch -x tools/gdb_spans.py
#
# The process must run hakmem built with debug information (a RelWithDebInfo build of
# libhakmem.a linked in, or libhakmem.so preloaded): the script reads hakmem's structures by
# name (heaps_all, hak_heap_t, hak_ss_t, hak_slab_t, hak_tc). For each heap and each of its
# SuperSlabs it prints every span: class, block size, slabs, blocks carved and out (`used`,
# which counts blocks in a thread cache too), blocks on the span's free list, blocks in the
# calling thread's cache (gdb stops the process in its main thread; other threads' caches are
# not read), the blocks live in the program (used minus cached: per class, so right when the
# class has one span), and the span's resident pages (from /proc/PID/pagemap). A span whose pages hold no live block is memory that only free
# blocks keep resident. docs/DESIGN-NOTES.md ("Fork trim") counted Nginx's pages with it.
import struct

import gdb

pid = gdb.selected_inferior().pid
inf = gdb.selected_inferior()
pagemap = open(f"/proc/{pid}/pagemap", "rb")


def resident(lo, hi):
    n = 0
    for pg in range(lo & ~4095, hi, 4096):
        pagemap.seek(pg // 4096 * 8)
        if struct.unpack("Q", pagemap.read(8))[0] >> 63 & 1:
            n += 1
    return n


def cache_lengths(classes):
    """Blocks in each class's list of the stopped thread's cache (links are XOR-encoded)."""
    try:
        key = int(gdb.parse_and_eval("hak_link_key"))
    except gdb.error:
        key = 0  # a build without encoded links
    tc = gdb.parse_and_eval("hak_tc")
    out = {}
    for sc in range(classes):
        b, n = int(tc["head"][sc]), 0
        while b and n < 100000:
            n += 1
            b = struct.unpack("Q", bytes(inf.read_memory(b, 8)))[0] ^ key
        out[sc] = n
    return out


classes = int(gdb.parse_and_eval("sizeof(hak_tc.head) / sizeof(hak_tc.head[0])"))
slabs_per_ss = int(gdb.parse_and_eval("sizeof(((hak_ss_t *)0)->slab_sc)"))
cached = cache_lengths(classes)
total = 0
h = gdb.parse_and_eval("heaps_all")
while int(h) != 0:
    print(f"heap {int(h):#x} owned {int(h['owned'])}")
    seen = set()
    for lst in ("ss_avail", "ss_full", "spare"):
        ss = h[lst]
        while int(ss) != 0 and int(ss) not in seen:
            seen.add(int(ss))
            print(f"  SuperSlab {int(ss['base']):#x} ({lst}) free slabs {int(ss['free_mask']):#010x}")
            for i in range(slabs_per_ss):
                sc = int(ss["slab_sc"][i])
                if sc >= classes or int(ss["slab_head"][i]) != i:
                    continue
                s = ss["slabs"][i]
                size, span, start = int(s["size"]), int(s["span"]), int(s["start"])
                used = int(s["used"])
                pages = resident(start, start + span * 65536)
                total += pages
                print(f"    slab {i:2d} class {sc:2d} size {size:7d} slabs {span} carved {int(s['carved']):5d}"
                      f" used {used:5d} free {int(s['free_count']):5d} cached {cached[sc]:5d}"
                      f" live {used - cached[sc]:5d} pages {pages}")
            if lst == "spare":
                break
            ss = ss["next"]
    h = h["all_next"]
print(f"resident pages in spans: {total}")
