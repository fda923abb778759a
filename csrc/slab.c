/* The slab pool: see slab.h. */
#define _DEFAULT_SOURCE          /* MAP_ANONYMOUS, madvise */
#define _DARWIN_C_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "slab.h"

/* Slabs are carved from 2 MiB arenas mapped straight from the system and offered to
 * transparent huge pages: one page fault and one TLB entry per 2 MiB instead of per
 * 4 KiB.  Measured on a 100,000-node chain (9.6 MB): backward went from 35 to 7 ns per
 * node once the graph no longer outgrew the 4 KiB-page TLB's reach (8 MiB). */
#define ARENA_BYTES ((size_t)2 << 20)
#define SLABS_PER_ARENA ((uint32_t)(ARENA_BYTES / CG_SLAB_BYTES))

struct cg_arena {
    char *base;
    uint32_t free_mask;        /* bit i: slab i is not handed out */
    cg_arena *prev, *next;     /* arenas with a free slab */
};

static void *map_arena(int huge)
{
    /* twice the size, then the unaligned ends unmapped: an aligned 2 MiB */
    char *raw = mmap(NULL, 2 * ARENA_BYTES, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *base = (char *)(((uintptr_t)raw + ARENA_BYTES - 1) & ~(uintptr_t)(ARENA_BYTES - 1));
    if (base > raw)
        munmap(raw, (size_t)(base - raw));
    if (base + ARENA_BYTES < raw + 2 * ARENA_BYTES)
        munmap(base + ARENA_BYTES, (size_t)(raw + 2 * ARENA_BYTES - (base + ARENA_BYTES)));
#ifdef MADV_HUGEPAGE
    if (huge)
        madvise(base, ARENA_BYTES, MADV_HUGEPAGE);
#else
    (void)huge;
#endif
    return base;
}

static void unlink_arena(cg_slab_pool *p, cg_arena *a)
{
    if (a->prev)
        a->prev->next = a->next;
    else
        p->arenas = a->next;
    if (a->next)
        a->next->prev = a->prev;
    a->prev = a->next = NULL;
}

static void push_arena(cg_slab_pool *p, cg_arena *a)
{
    a->prev = NULL;
    a->next = p->arenas;
    if (p->arenas)
        p->arenas->prev = a;
    p->arenas = a;
}

/* The lowest free slab of an arena with one, mapping a new arena if none has. */
static cg_slab *take_slab(cg_slab_pool *p)
{
    cg_arena *a = p->arenas;
    if (!a) {
        if (!(a = malloc(sizeof *a)))
            return NULL;
        /* The first arena keeps 4 KiB pages: a small program would otherwise pay for
         * zeroing a whole 2 MiB page (~0.1 ms) to build a graph of a few nodes. */
        if (!(a->base = map_arena(p->arenas_mapped++ > 0))) {
            free(a);
            return NULL;
        }
        a->free_mask = SLABS_PER_ARENA == 32 ? 0xFFFFFFFFu
                                             : ((uint32_t)1 << SLABS_PER_ARENA) - 1;
        push_arena(p, a);
    }
    uint32_t i = (uint32_t)__builtin_ctz(a->free_mask);
    a->free_mask &= ~((uint32_t)1 << i);
    if (!a->free_mask)
        unlink_arena(p, a);
    cg_slab *s = (cg_slab *)(void *)(a->base + (size_t)i * CG_SLAB_BYTES);
    s->arena = a;
    if (p->on_new)
        p->on_new(s, CG_SLAB_BYTES);
    return s;
}

/* A slab goes back to its arena; an arena with nothing handed out goes back to the
 * system. */
static void give_back_slab(cg_slab_pool *p, cg_slab *s)
{
    cg_arena *a = s->arena;
    uint32_t i = (uint32_t)(((char *)s - a->base) / CG_SLAB_BYTES);
    if (p->on_release)
        p->on_release(s);
    if (!a->free_mask)
        push_arena(p, a);
    a->free_mask |= (uint32_t)1 << i;
    if (a->free_mask == (SLABS_PER_ARENA == 32 ? 0xFFFFFFFFu
                                               : ((uint32_t)1 << SLABS_PER_ARENA) - 1)) {
        unlink_arena(p, a);
        munmap(a->base, ARENA_BYTES);
        free(a);
    }
}

enum { IN_USE, SPARSE, EMPTY };

static uint32_t usable(const cg_slab_pool *p)
{
    return p->per_slab - p->first;
}

int cg_slab_pool_init(cg_slab_pool *p, size_t chunk, size_t max_empty_slabs)
{
    memset(p, 0, sizeof *p);
    if (chunk == 0 || chunk % 16 || chunk > CG_SLAB_BYTES / 8)
        return -1;
    p->chunk = chunk;
    p->reciprocal = (uint32_t)((((uint64_t)1 << 32) + chunk - 1) / chunk);
    p->per_slab = (uint32_t)(CG_SLAB_BYTES / chunk);
    p->words = (p->per_slab + 63) / 64;
    size_t header = sizeof(cg_slab) + p->words * sizeof(uint64_t);
    p->first = (uint32_t)((header + chunk - 1) / chunk);
    p->max_empty = max_empty_slabs;
    /* A slab with live chunks is reused once at most a quarter of it is live.  A graph
     * built into holes sits among the survivors, and a backward sweep streams them too:
     * over a heap with half its chunks live, a first backward ran 2-3x slower than over
     * fresh slabs (deep chain, 1e5-1e6 nodes: 41-55 ns per node; with a quarter: 14-22).
     * A quarter bounds the waste to 4x live memory. */
    p->sparse_at = usable(p) / 4;
    return 0;
}

static void mark_reserved(const cg_slab_pool *p, cg_slab *s)
{
    memset(s->used, 0, p->words * sizeof(uint64_t));
    for (uint32_t i = 0; i < p->first; i++)
        s->used[i / 64] |= (uint64_t)1 << (i % 64);
    for (uint32_t i = p->per_slab; i < 64 * p->words; i++)
        s->used[i / 64] |= (uint64_t)1 << (i % 64);
    s->live = 0;
    s->cursor = p->first;
}

static cg_slab *new_slab(cg_slab_pool *p)
{
    cg_slab *s = take_slab(p);
    if (!s)
        return NULL;
    mark_reserved(p, s);
    p->n_slabs++;
    return s;
}

static void unlink_sparse(cg_slab_pool *p, cg_slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        p->sparse = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

static void push_sparse(cg_slab_pool *p, cg_slab *s)
{
    s->where = SPARSE;
    s->prev = NULL;
    s->next = p->sparse;
    if (p->sparse)
        p->sparse->prev = s;
    p->sparse = s;
}

/* s has nothing live and is not current: cache it, or give it back. */
static void retire_empty(cg_slab_pool *p, cg_slab *s)
{
    if (p->n_empty < p->max_empty) {
        s->where = EMPTY;
        s->next = p->empty;
        p->empty = s;
        p->n_empty++;
        return;
    }
    p->n_slabs--;
    give_back_slab(p, s);
}

/* The current slab has no free chunk at or above its cursor: put it where it belongs
 * and take the next one (a sparse slab first, to keep the waste down, then a cached
 * empty one, then a new one). */
static cg_slab *next_slab(cg_slab_pool *p)
{
    cg_slab *old = p->current, *s;
    if (old) {
        if (old->live == 0) {         /* everything in it died: start it over */
            mark_reserved(p, old);
            return old;
        }
        old->cursor = p->first;
        if (old->live <= p->sparse_at)
            push_sparse(p, old);
        else
            old->where = IN_USE;
    }
    if (p->sparse) {
        s = p->sparse;
        unlink_sparse(p, s);
    } else if (p->empty) {
        s = p->empty;
        p->empty = s->next;
        p->n_empty--;
        s->next = NULL;
    } else if (!(s = new_slab(p))) {
        p->current = NULL;
        return NULL;
    }
    s->where = IN_USE;
    s->cursor = p->first;
    p->current = s;
    return s;
}

/* The lowest free chunk at or above s->cursor, or 0 (chunk 0 is always the header's). */
static uint32_t lowest_free(const cg_slab_pool *p, cg_slab *s)
{
    uint32_t w = s->cursor / 64;
    if (w >= p->words)
        return 0;
    uint64_t free_bits = ~s->used[w] & (~(uint64_t)0 << (s->cursor % 64));
    while (!free_bits) {
        if (++w == p->words)
            return 0;
        free_bits = ~s->used[w];
    }
    return w * 64 + (uint32_t)__builtin_ctzll(free_bits);
}

void *cg_slab_alloc_next(cg_slab_pool *p)
{
    cg_slab *s = p->current;
    uint32_t i = s ? lowest_free(p, s) : 0;
    if (i == 0) {
        if (!(s = next_slab(p)))
            return NULL;
        i = lowest_free(p, s);   /* a slab out of next_slab has a free chunk */
    }
    s->used[i / 64] |= (uint64_t)1 << (i % 64);
    s->live++;
    s->cursor = i + 1;
    return (char *)s + (size_t)i * p->chunk;
}

/* A chunk of s was freed, leaving s empty or sparse_at live. */
void cg_slab_freed(cg_slab_pool *p, cg_slab *s)
{
    if (s == p->current) {
        if (s->live == 0)
            s->cursor = p->first;     /* the next graph starts where the last one did */
        return;
    }
    if (s->live == 0) {
        if (s->where == SPARSE)
            unlink_sparse(p, s);
        retire_empty(p, s);
    } else if (s->live == p->sparse_at && s->where == IN_USE) {
        push_sparse(p, s);
    }
}

void cg_slab_pool_trim(cg_slab_pool *p)
{
    while (p->empty) {
        cg_slab *s = p->empty;
        p->empty = s->next;
        p->n_empty--;
        p->n_slabs--;
        give_back_slab(p, s);
    }
}
