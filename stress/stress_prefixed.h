/* stress_prefixed.h -- forced in with -include (stress/CMakeLists.txt) to build a stress program
 * on hakmem's prefixed API instead of plain malloc: for the sanitizer builds, where the
 * sanitizer's runtime owns malloc and LD_PRELOAD cannot put hakmem in its place. Every system
 * header the programs use is included first, so the macros below rename only the programs'
 * own calls, never a declaration. The programs allocate with nothing else (no strdup). */
#pragma once

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"

#define malloc(n) hak_malloc(n)
#define calloc(c, n) hak_calloc(c, n)
#define realloc(p, n) hak_realloc(p, n)
#define free(p) hak_free(p)
#define aligned_alloc(a, n) hak_aligned_alloc(a, n)
#define posix_memalign(out, a, n) hak_posix_memalign(out, a, n)
