/* Small containers the graph code uses: a growable array of pointers and a check for
 * repeats.  Plain C99. */
#ifndef CGRAD_CONTAINERS_H
#define CGRAD_CONTAINERS_H

#include <stddef.h>

/* A growable array of pointers. */
typedef struct {
    void **items;
    size_t len;
    size_t cap;
} cg_vec;

int cg_vec_grow(cg_vec *v);  /* double the capacity: 0, or -1 out of memory */
void cg_vec_free(cg_vec *v);

static inline int cg_vec_push(cg_vec *v, void *item)  /* 0, or -1 out of memory */
{
    if (v->len == v->cap && cg_vec_grow(v) < 0)
        return -1;
    v->items[v->len++] = item;
    return 0;
}

/* Whether a pointer appears twice among items[0..n): 1, 0, or -1 out of memory (a
 * bitmap over the range they span, or a hash set where that range is sparse: Python's
 * set of 235,000 ids took 50 ms). */
int cg_has_repeats(void *const *items, size_t n);

#endif
