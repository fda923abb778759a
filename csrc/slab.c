/* The slab pool: see slab.h. */
#define _POSIX_C_SOURCE 200112L  /* posix_memalign */
#include <stdlib.h>
#include <string.h>
#include "slab.h"

enum { IN_USE, SPARSE, EMPTY };

struct cg_slab {
    cg_slab *prev, *next;   /* links in the sparse list, or the empty cache (next) */
    uint32_t live;          /* chunks handed out and not freed */
    uint32_t cursor;        /* no free chunk below it in the current slab */
    uint32_t where;
    uint32_t pad;
    uint64_t used[];        /* bit i: chunk i is live (header chunks and the tail: set) */
};

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
    p->per_slab = (uint32_t)(CG_SLAB_BYTES / chunk);
    p->words = (p->per_slab + 63) / 64;
    size_t header = sizeof(cg_slab) + p->words * sizeof(uint64_t);
    p->first = (uint32_t)((header + chunk - 1) / chunk);
    p->max_empty = max_empty_slabs;
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
    void *mem = NULL;
    if (posix_memalign(&mem, CG_SLAB_BYTES, CG_SLAB_BYTES) != 0)
        return NULL;
    cg_slab *s = mem;
    mark_reserved(p, s);
    p->n_slabs++;
    if (p->on_new)
        p->on_new(s, CG_SLAB_BYTES);
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
    if (p->on_release)
        p->on_release(s);
    free(s);
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
        if (old->live <= usable(p) / 2)
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

void *cg_slab_alloc(cg_slab_pool *p)
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

void cg_slab_free(cg_slab_pool *p, void *chunk)
{
    cg_slab *s = (cg_slab *)((uintptr_t)chunk & ~(uintptr_t)(CG_SLAB_BYTES - 1));
    uint32_t i = (uint32_t)(((char *)chunk - (char *)s) / p->chunk);
    s->used[i / 64] &= ~((uint64_t)1 << (i % 64));
    s->live--;
    if (s == p->current) {
        if (s->live == 0)
            s->cursor = p->first;   /* the next graph starts where the last one did */
        return;
    }
    if (s->live == 0) {
        if (s->where == SPARSE)
            unlink_sparse(p, s);
        retire_empty(p, s);
    } else if (s->live == usable(p) / 2 && s->where == IN_USE) {
        push_sparse(p, s);
    }
}
