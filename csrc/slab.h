/* Fixed-size chunks carved from aligned 64 KiB slabs, handed out in address order.
 *
 * Why: a free list hands memory back in the order it died, so a graph rebuilt in a loop
 * ends up scattered and its backward sweep waits on memory.  Here a slab is filled from
 * its lowest free chunk upwards, so nodes built one after another sit side by side; a
 * slab with live chunks is reused only once at most half of it is live (bounding the
 * waste to 2x), and a slab whose chunks all died is reused from its start.  Plain C,
 * no locking: the caller serialises (Python's GIL). */
#ifndef CGRAD_SLAB_H
#define CGRAD_SLAB_H

#include <stddef.h>
#include <stdint.h>

#define CG_SLAB_BYTES ((size_t)1 << 16)

typedef struct cg_slab cg_slab;

typedef struct {
    size_t chunk;             /* bytes per chunk */
    uint32_t per_slab;        /* chunks per slab, the header's included */
    uint32_t first;           /* the first chunk after the header */
    uint32_t words;           /* 64-bit words in a slab's bitmap */
    cg_slab *current;         /* where chunks come from */
    cg_slab *sparse;          /* slabs at most half live, not current (doubly linked) */
    cg_slab *empty;           /* a cache of slabs with nothing live */
    size_t n_empty, max_empty;
    size_t n_slabs;           /* slabs held, the cache's included */
    /* told about each slab taken from / given back to the system (memory tracing) */
    void (*on_new)(void *slab, size_t bytes);
    void (*on_release)(void *slab);
} cg_slab_pool;

/* chunk: bytes per chunk, a multiple of 16 and at most CG_SLAB_BYTES / 8.  0 or -1. */
int cg_slab_pool_init(cg_slab_pool *p, size_t chunk, size_t max_empty_slabs);
void *cg_slab_alloc(cg_slab_pool *p);       /* NULL when out of memory; not zeroed */
void cg_slab_free(cg_slab_pool *p, void *chunk);

#endif
