/* Fixed-size chunks carved from aligned 64 KiB slabs, handed out in address order.
 *
 * Why: a free list hands memory back in the order it died, so a graph rebuilt in a loop
 * ends up scattered and its backward sweep waits on memory.  Here a slab is filled from
 * its lowest free chunk upwards, so nodes built one after another sit side by side; a
 * slab with live chunks is reused only once at most a quarter of it is live (so a graph
 * built there is mostly contiguous, and the waste is bounded to 4x), and a slab whose
 * chunks all died is reused from its start.  Plain C, no locking: the caller
 * serialises (Python's GIL). */
#ifndef CGRAD_SLAB_H
#define CGRAD_SLAB_H

#include <stddef.h>
#include <stdint.h>

#define CG_SLAB_BYTES ((size_t)1 << 16)

typedef struct cg_slab cg_slab;
typedef struct cg_arena cg_arena;

struct cg_slab {
    cg_slab *prev, *next;   /* links in the sparse list, or the empty cache (next) */
    cg_arena *arena;        /* the 2 MiB mapping it was carved from */
    uint32_t live;          /* chunks handed out and not freed */
    uint32_t cursor;        /* no free chunk below it in the current slab */
    uint32_t where;
    uint32_t pad;
    uint64_t used[];        /* bit i: chunk i is live (header chunks and the tail: set) */
};

typedef struct {
    size_t chunk;             /* bytes per chunk */
    uint32_t per_slab;        /* chunks per slab, the header's included */
    uint32_t first;           /* the first chunk after the header */
    uint32_t words;           /* 64-bit words in a slab's bitmap */
    uint32_t reciprocal;      /* ceil(2**32 / chunk): offset / chunk without a division */
    uint32_t sparse_at;       /* a slab with live chunks is reused once this few are live */
    cg_slab *current;         /* where chunks come from */
    cg_slab *sparse;          /* slabs at most a quarter live, not current (doubly linked) */
    cg_slab *empty;           /* a cache of slabs with nothing live */
    cg_arena *arenas;         /* arenas with slabs not handed out */
    size_t arenas_mapped;     /* ever, by this pool */
    size_t n_empty, max_empty;
    size_t n_slabs;           /* slabs held, the cache's included */
    /* told about each slab put to use / given back (memory tracing) */
    void (*on_new)(void *slab, size_t bytes);
    void (*on_release)(void *slab);
} cg_slab_pool;

/* chunk: bytes per chunk, a multiple of 16 and at most CG_SLAB_BYTES / 8.  0 or -1. */
int cg_slab_pool_init(cg_slab_pool *p, size_t chunk, size_t max_empty_slabs);
/* Give the cached empty slabs back to the system. */
void cg_slab_pool_trim(cg_slab_pool *p);

/* The slow halves of alloc and free (another slab needed; a slab may change lists). */
void *cg_slab_alloc_next(cg_slab_pool *p);
void cg_slab_freed(cg_slab_pool *p, cg_slab *s);

/* A chunk, not zeroed; NULL when out of memory.  Inline: it runs once per node. */
static inline void *cg_slab_alloc(cg_slab_pool *p)
{
    cg_slab *s = p->current;
    if (s) {
        uint32_t w = s->cursor / 64;
        if (w < p->words) {
            uint64_t free_bits = ~s->used[w] & (~(uint64_t)0 << (s->cursor % 64));
            if (free_bits) {
                uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(free_bits);
                s->used[w] |= (uint64_t)1 << (i % 64);
                s->live++;
                s->cursor = i + 1;
                return (char *)s + (size_t)i * p->chunk;
            }
        }
    }
    return cg_slab_alloc_next(p);
}

static inline void cg_slab_free(cg_slab_pool *p, void *chunk)
{
    cg_slab *s = (cg_slab *)((uintptr_t)chunk & ~(uintptr_t)(CG_SLAB_BYTES - 1));
    uint64_t offset = (uint64_t)((char *)chunk - (char *)s);
    uint32_t i = (uint32_t)((offset * p->reciprocal) >> 32);   /* exact below 2**16 */
    s->used[i / 64] &= ~((uint64_t)1 << (i % 64));
    /* the slab changes lists only when it empties or thins out to sparse_at */
    if (--s->live == 0 || s->live == p->sparse_at)
        cg_slab_freed(p, s);
}

/* Zero a block of up to 128 bytes (a multiple of 16, 16-byte aligned) with 16-byte
 * stores: compilers turn a small memset, or a loop of stores, into `rep stos`, whose
 * start-up costs more than the six stores a node needs. */
typedef uint64_t cg_zero16 __attribute__((vector_size(16)));

static inline void cg_zero_block(void *block, size_t bytes)
{
    cg_zero16 *v = (cg_zero16 *)block, zero = {0, 0};
    switch (bytes / 16) {
    case 8: v[7] = zero; /* fall through */
    case 7: v[6] = zero; /* fall through */
    case 6: v[5] = zero; /* fall through */
    case 5: v[4] = zero; /* fall through */
    case 4: v[3] = zero; /* fall through */
    case 3: v[2] = zero; /* fall through */
    case 2: v[1] = zero; /* fall through */
    case 1: v[0] = zero; /* fall through */
    default: break;
    }
}

#endif
