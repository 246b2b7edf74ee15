/* hak_front.h -- the front door's internal hooks (process start and exit). */
#pragma once

#include "hak_base.h"

/* Load time: global set-up and the fork handlers. */
HAK_HIDDEN void hak_front_init(void);
/* Exit: the HAKMEM_DEBUG report. */
HAK_HIDDEN void hak_front_fini(void);
/* Start the purge thread if it is not running yet (hak_init.c); no allocator lock held. */
HAK_HIDDEN void hak_front_purge_kick(void);
