/* hak_first_heap.c -- the first heap a process makes (its first thread's, as a rule), in .bss
 * instead of metadata memory. Its own file so that the link order alone (CMakeLists.txt,
 * HAK_MODULE_OBJECTS) puts it first after the pagemap's zero leaf, on a page boundary: the
 * small globals of the modules after it then share its page, and the 2.2 KiB heap costs a
 * process no page of its own. In metadata memory it shared two pages with the first
 * SuperSlab's header (3.4 KiB), which now takes one (docs/DESIGN-NOTES.md, "Nginx's memory,
 * page by page"). */
#include "hak_tls.h"

_Alignas(4096) hak_heap_t hak_first_heap;
