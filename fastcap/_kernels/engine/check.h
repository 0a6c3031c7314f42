/* check.h -- FC_CHECK, the engine's bounds checks.
 *
 * Debug builds (FASTCAP_CYTHON_DEBUG=1 at build time, which defines
 * FASTCAP_DEBUG_BUILD=1) check every row and column range the engine touches
 * against the array extents and abort with a message instead of reading or
 * writing out of bounds; other builds compile the checks out.
 */
#ifndef FASTCAP_ENGINE_CHECK_H
#define FASTCAP_ENGINE_CHECK_H

#if defined(FASTCAP_DEBUG_BUILD) && FASTCAP_DEBUG_BUILD
#include <stdio.h>
#include <stdlib.h>
#define FC_CHECK(cond)                                                                  \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fastcap engine: bounds check failed: %s (%s:%d)\n", #cond,  \
                    __FILE__, __LINE__);                                                \
            abort();                                                                    \
        }                                                                               \
    } while (0)
#else
#define FC_CHECK(cond) ((void)0)
#endif

#endif
