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

/* Items (nodes inside Values) lie 16-byte aligned, mostly in creation order in a few
 * arenas: a bit per 16 bytes of the range they span is usually far smaller than a hash
 * table of 2n words (a model's 235k parameters: ~180 KB against 4 MB), and fewer pages
 * to touch for the first time is most of this check's cost in a fresh process. */
enum { GRAIN = 16 };

static int repeats_in_bitmap(void *const *items, size_t n, uintptr_t low, size_t bits)
{
    uint64_t *seen = calloc((bits + 63) / 64, sizeof *seen);
    if (!seen)
        return -1;
    int repeat = 0;
    for (size_t i = 0; i < n && !repeat; i++) {
        size_t bit = ((uintptr_t)items[i] - low) / GRAIN;
        uint64_t mask = (uint64_t)1 << (bit % 64);
        repeat = (seen[bit / 64] & mask) != 0;
        seen[bit / 64] |= mask;
    }
    free(seen);
    return repeat;
}

int cg_has_repeats(void *const *items, size_t n)
{
    uintptr_t low = UINTPTR_MAX, high = 0;
    int aligned = 1;
    for (size_t i = 0; i < n; i++) {
        uintptr_t key = (uintptr_t)items[i];
        low = key < low ? key : low;
        high = key > high ? key : high;
        aligned &= key % GRAIN == 0;
    }
    size_t size = 16;
    while (size < 2 * n)
        size *= 2;
    if (n && aligned && (high - low) / GRAIN / 8 < size * sizeof(uintptr_t))
        return repeats_in_bitmap(items, n, low, (high - low) / GRAIN + 1);
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
