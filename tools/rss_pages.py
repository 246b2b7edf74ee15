#!/usr/bin/env python3
"""rss_pages.py -- where a running process's anonymous memory sits, page by page.

Usage: tools/rss_pages.py PID [PID...]

For each process: RssAnon, then every mapping with anonymous pages (KiB resident of KiB
mapped, and its file for the copy-on-write pages of a binary's data), then, for each
anonymous mapping of 1 MiB or more (hakmem's SuperSlabs and metadata), which 64 KiB slabs
hold resident pages: "0x470000:13" is 13 pages in the slab at that offset, "@k" names the
only page when there is one. A hakmem span of one slab holding a few small blocks shows as
one page at @0. Reads /proc/PID/smaps and /proc/PID/pagemap (the present bit needs no
privilege). This is how docs/DESIGN-NOTES.md ("Nginx's memory, page by page") counted
Nginx's pages under hakmem and glibc.
"""
import struct
import sys

PAGE = 4096
SLAB = 1 << 16


def mappings(pid):
    """(lo, hi, name, anon_kib) for every mapping with anonymous pages."""
    out, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                cur = [lo, hi, head[5] if len(head) > 5 else "", 0]
                out.append(cur)
            elif head[0] == "Anonymous:" and cur is not None:
                cur[3] = int(head[1])
    return [m for m in out if m[3] > 0]


def resident_pages(pid, lo, hi):
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        pm.seek(lo // PAGE * 8)
        data = pm.read((hi - lo) // PAGE * 8)
    words = struct.unpack(f"{len(data) // 8}Q", data)
    return [lo + i * PAGE for i, v in enumerate(words) if v >> 63 & 1]


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split()[1]
    return "?"


def report(pid):
    print(f"== pid {pid}: RssAnon {status(pid, 'RssAnon')} kB, VmRSS {status(pid, 'VmRSS')} kB")
    for lo, hi, name, anon in mappings(pid):
        print(f"  {anon:6d} kB of {(hi - lo) // 1024:8d} kB  {lo:x}-{hi:x} {name}")
        if name or hi - lo < (1 << 20):
            continue
        slabs = {}
        for pg in resident_pages(pid, lo, hi):
            slabs.setdefault(pg & ~(SLAB - 1), []).append((pg % SLAB) // PAGE)
        cells = []
        for base, pages in sorted(slabs.items()):
            cells.append(f"{base - (lo & ~(SLAB - 1)):#x}:{len(pages)}" + (f"@{pages[0]}" if len(pages) == 1 else ""))
        for i in range(0, len(cells), 8):
            print("        " + " ".join(cells[i:i + 8]))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        report(int(arg))


if __name__ == "__main__":
    main()
