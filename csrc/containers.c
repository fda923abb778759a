/* The small containers (containers.h). */
#include <stdint.h>
#include <stdlib.h>
#include "containers.h"

int cg_vec_grow(cg_vec *v)
{
    size_t cap = v->cap ? 2 * v->cap : 64;
    void **items = realloc(v->items, cap * sizeof *items);
    if (!items)
        return -1;
    v->items = items;
    v->cap = cap;
    return 0;
}

void cg_vec_free(cg_vec *v)
{
    free(v->items);
    v->items = NULL;
    v->len = v->cap = 0;
}

int cg_has_repeats(void *const *items, size_t n)
{
    size_t size = 16;
    while (size < 2 * n)
        size *= 2;
    uintptr_t *table = calloc(size, sizeof *table);  /* 0: empty (no item is NULL) */
    if (!table)
        return -1;
    int repeat = 0;
    for (size_t i = 0; i < n && !repeat; i++) {
        uintptr_t key = (uintptr_t)items[i];
        size_t at = (size_t)((key >> 4) * 0x9E3779B97F4A7C15ull) & (size - 1);
        while (table[at] && table[at] != key)
            at = (at + 1) & (size - 1);
        repeat = table[at] == key;
        table[at] = key;
    }
    free(table);
    return repeat;
}
