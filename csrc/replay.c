/* Replay: a recorded graph packed into a plan of steps over an array of slots.
 *
 * Every node the graph touches gets a slot in two contiguous arrays (val, grad), and
 * every interior node a step naming its kids by slot.  Slots are handed out so that a
 * neuron's weights, and the inputs a dot product reads, sit next to each other: such a
 * "dense" dot reads two runs of doubles instead of chasing 2n pointers.  This file
 * builds the plan (slots, steps, the layer batches, the runs backward zeroes, which
 * gradients are skipped or deferred); plan_run.c runs it, plan_nodes.c hands its numbers
 * to and from the nodes. */
#include <stdlib.h>
#include <string.h>
#include "cgrad.h"
#include "node_ops.h"
#include "plan.h"

/* While planning, a node's mark holds its slot + 1 (0: none yet).  Marks go back to 0
 * afterwards, which no traversal epoch uses. */
static uint32_t slot_of(cg_node *n) { return n->mark - 1; }

static void assign(cg_plan *p, cg_node *n)
{
    if (n->mark == 0) {
        p->slot_node[p->n_slots] = n;
        n->mark = (uint32_t)++p->n_slots;
    }
}

static int is_run(cg_node **kids, uint32_t m)
{
    for (uint32_t i = 1; i < m; i++)
        if (slot_of(kids[i]) != slot_of(kids[0]) + i)
            return 0;
    return 1;
}

static int outside(uint32_t s, uint32_t start, uint32_t len)
{
    return s < start || s >= start + len;
}

/* A dot whose weights and inputs are two disjoint runs of slots (bias apart from both):
 * each slot then gets exactly one contribution, so the loops can run run by run. */
/* Whether a row's items sit in consecutive slots, asked once per row: row_runs[slot of
 * the row] is 0 (not asked yet), 1 (a run) or 2 (not). */
static int row_is_run(cg_node *row, uint8_t *row_runs)
{
    uint8_t *known = &row_runs[slot_of(row)];
    if (!*known)
        *known = is_run(cg_kids(row), row->n_kids) ? 1 : 2;
    return *known == 1;
}

static int dense_dot(cg_node *n, cg_step *s, uint8_t *row_runs)
{
    cg_dot_parts d = cg_dot_of(n);
    uint32_t m = d.m;
    if (m == 0)
        return 0;
    if (n->flags & CG_FLAG_ROWS) {
        if (!row_is_run(cg_kids(n)[0], row_runs) || !row_is_run(cg_kids(n)[1], row_runs))
            return 0;
    } else if (!is_run(d.w, m) || !is_run(d.x, m)) {
        return 0;
    }
    s->w = slot_of(d.w[0]);
    s->x = slot_of(d.x[0]);
    if (!outside(s->w, s->x, m) || !outside(s->x, s->w, m))
        return 0;
    if (d.bias) {
        s->bias = slot_of(d.bias);
        if (!outside(s->bias, s->w, m) || !outside(s->bias, s->x, m))
            return 0;
    }
    return 1;
}

/* The nodes a dot reads, weights first: assigned first, they get consecutive slots.  A
 * row is seen once, however many dots read it (the row node takes its slot first). */
static void assign_dot_kids(cg_plan *p, cg_node *n)
{
    cg_dot_parts d = cg_dot_of(n);
    if (n->flags & CG_FLAG_ROWS) {
        for (int r = 0; r < 2; r++) {
            cg_node *row = cg_kids(n)[r];
            if (row->mark)
                continue;
            assign(p, row);
            for (uint32_t j = 0; j < row->n_kids; j++)
                assign(p, cg_kids(row)[j]);
        }
        return;
    }
    for (uint32_t j = 0; j < d.m; j++)
        assign(p, d.w[j]);
    if (d.bias && (n->flags & CG_FLAG_ROWS))  /* a row's bias follows its weights */
        assign(p, d.bias);
    for (uint32_t j = 0; j < d.m; j++)
        assign(p, d.x[j]);
    if (d.bias)
        assign(p, d.bias);
}

/* ---- layer batches: a layer's dots over the same inputs, summed side by side --------- */

static int is_dense_dot(const cg_step *s)
{
    return s->op == CG_DOT && s->dense;
}

/* An activation that cannot fail, applied to the dot just before it. */
static int is_activation_of(const cg_plan *p, const cg_step *act, const cg_step *dot)
{
    return (CG_OP_INFO[act->op].flags & CG_OPF_CANNOT_FAIL)
        && act->n_kids == 1 && p->kid_slots[act->kids] == dot->out;
}

static int reads_slot(const cg_step *dot, uint32_t slot)
{
    uint32_t m = cg_step_dot_length(dot);
    return (slot >= dot->w && slot < dot->w + m) || (slot >= dot->x && slot < dot->x + m)
        || ((dot->flags & CG_FLAG_HAS_BIAS) && slot == dot->bias);
}

/* A layer, as the recorded order lists it: dense dots over one run of inputs, each
 * followed by its activation or not, [dot, act, dot, act, ...].  Up to CG_BATCH_DOTS of
 * them become a batch whose dots forward() sums side by side (each sum in its own
 * order, so the values are the same; four independent chains of adds instead of one).
 * Valid only if no dot of the batch reads a value the batch computes. */
void cg_plan_mark_batches(cg_plan *p)
{
    for (size_t i = 0; i < p->n_steps; i++) {
        const cg_step *first = &p->steps[i];
        if (!is_dense_dot(first))
            continue;
        size_t end = i;
        int dots = 0;
        while (end < p->n_steps && dots < CG_BATCH_DOTS) {
            const cg_step *d = &p->steps[end];
            if (!is_dense_dot(d) || d->x != first->x || d->flags != first->flags
                || cg_step_dot_length(d) != cg_step_dot_length(first))
                break;
            end++;
            if (end < p->n_steps && is_activation_of(p, &p->steps[end], d))
                end++;
            dots++;
        }
        int independent = dots >= 2;
        for (size_t a = i; a < end && independent; a++)
            for (size_t b = i; b < end && independent; b++)
                if (p->steps[b].op == CG_DOT && reads_slot(&p->steps[b], p->steps[a].out))
                    independent = 0;
        if (independent) {
            p->steps[i].batch = (uint8_t)(end - i);
            i = end - 1;
        }
    }
}

void cg_plan_free(cg_plan *p)
{
    if (!p)
        return;
    free(p->slot_node);
    free(p->leaf_slots);
    free(p->val);
    free(p->grad);
    free(p->steps);
    free(p->kid_slots);
    free(p->scratch);
    free(p->forward_out);
    free(p->backward_out);
    free(p->interior_runs);
    free(p->gradless);
    free(p->written);
    free(p->param_bits);
    free(p->own_nodes);
    free(p->loss_rows);
    free(p->loss_slots);
    cg_plan_free_layers(p);
    free(p);
}

/* Sort slots by where their nodes live: copying between the plan and the nodes then
 * walks memory forward instead of jumping (nodes are Python objects, placed wherever the
 * allocator put them).  A radix sort on the address's offset from the lowest one (a few
 * passes of 11 bits; qsort took a tenth of a large graph's recording), over one word
 * per slot: the offset in 16-byte units above, the slot below (nodes lie 16-byte aligned
 * in a span of less than 64 GiB; else two words).  Equal addresses keep their order.
 * 0, or -1 out of memory. */
enum { DIGIT = 11, BUCKETS = 1 << DIGIT, GRAIN = 16 };

#define RADIX_SORT(type, count, from, to, start, key, high_key)                       \
    do {                                                                              \
        for (unsigned shift = 0; (count) && shift < 64 && (high_key) >> shift;        \
             shift += DIGIT) {                                                        \
            memset(start, 0, BUCKETS * sizeof *(start));                              \
            for (size_t i = 0; i < (count); i++)                                      \
                (start)[(key((from)[i]) >> shift) & (BUCKETS - 1)]++;                 \
            for (size_t d = 0, total = 0; d < BUCKETS; d++) {                         \
                size_t here = (start)[d];                                             \
                (start)[d] = total;                                                   \
                total += here;                                                        \
            }                                                                         \
            for (size_t i = 0; i < (count); i++)                                      \
                (to)[(start)[(key((from)[i]) >> shift) & (BUCKETS - 1)]++] = (from)[i]; \
            type *swap_ = (from);                                                     \
            (from) = (to);                                                            \
            (to) = swap_;                                                             \
        }                                                                             \
    } while (0)

typedef struct {
    uintptr_t address;
    uint32_t slot;
} slot_address;

#define PACKED_KEY(e) ((e) >> 32)
#define WIDE_KEY(e) ((e).address)

int cg_plan_sort_by_node(cg_plan *p, uint32_t *slots, size_t count)
{
    uintptr_t low = UINTPTR_MAX, high = 0;
    int aligned = 1;
    for (size_t i = 0; i < count; i++) {
        uintptr_t address = (uintptr_t)cg_plan_node(p, slots[i]);
        low = address < low ? address : low;
        high = address > high ? address : high;
        aligned &= address % GRAIN == 0;
    }
    int packed = !count || (aligned && (high - low) / GRAIN <= UINT32_MAX);
    size_t entry = packed ? sizeof(uint64_t) : sizeof(slot_address);
    size_t *start = malloc(BUCKETS * sizeof *start);
    void *buffer = malloc(2 * (count + 1) * entry);   /* from, then to */
    if (!start || !buffer) {
        free(start);
        free(buffer);
        return -1;
    }
    if (packed) {
        uint64_t *from = buffer, *to = from + count + 1;
        for (size_t i = 0; i < count; i++)
            from[i] = (uint64_t)(((uintptr_t)cg_plan_node(p, slots[i]) - low) / GRAIN) << 32
                    | slots[i];
        RADIX_SORT(uint64_t, count, from, to, start, PACKED_KEY, (uint64_t)(high - low) / GRAIN);
        for (size_t i = 0; i < count; i++)
            slots[i] = (uint32_t)from[i];
    } else {
        slot_address *from = buffer, *to = from + count + 1;
        for (size_t i = 0; i < count; i++)
            from[i] = (slot_address){(uintptr_t)cg_plan_node(p, slots[i]) - low, slots[i]};
        RADIX_SORT(slot_address, count, from, to, start, WIDE_KEY, high - low);
        for (size_t i = 0; i < count; i++)
            slots[i] = from[i].slot;
    }
    free(buffer);
    free(start);
    return 0;
}

/* The slots backward zeroes, as runs of consecutive slots (a layer's interior nodes
 * mostly sit side by side): memset instead of a store per slot.  Not the dots of a
 * layer with its activation: the layer sets their grads itself (cg_layer_backward). */
int cg_plan_find_interior_runs(cg_plan *p)
{
    size_t runs = 0;
    uint8_t *interior = calloc(p->n_slots + 1, 1);
    if (!interior)
        return -1;
    for (size_t i = 0; i < p->n_backward; i++)
        interior[p->steps[i].out] = 1;
    for (size_t i = 0; i < p->n_layers; i++) {
        const cg_layer *l = &p->layers[i];
        for (size_t c = 0; l->act_out && c < (size_t)l->K * l->B; c++)
            interior[l->out[c]] = 0;
    }
    for (size_t s = 0; s < p->n_slots; s++)
        runs += interior[s] && (s == 0 || !interior[s - 1]);
    p->interior_runs = malloc((2 * runs + 1) * sizeof *p->interior_runs);
    if (!p->interior_runs) {
        free(interior);
        return -1;
    }
    p->n_interior_runs = runs;
    for (size_t s = 0, r = 0; s < p->n_slots; s++) {
        if (!interior[s])
            continue;
        if (s == 0 || !interior[s - 1]) {
            p->interior_runs[2 * r] = (uint32_t)s;
            p->interior_runs[2 * r + 1] = 0;
            r++;
        }
        p->interior_runs[2 * r - 1]++;
    }
    free(interior);
    return 0;
}

int cg_plan_drop_layer_steps(cg_plan *p)
{
    size_t kept = 0, kept_backward = 0, kids = 0;
    uint32_t *index = malloc((p->n_steps + 1) * sizeof *index);   /* old -> new */
    if (!index)
        return -1;
    for (size_t i = 0; i < p->n_steps; i++) {
        const cg_step *s = &p->steps[i];
        int dropped = s->batch == CG_IN_LAYER && i + 1 != p->n_backward;   /* not the loss */
        index[i] = dropped ? UINT32_MAX : (uint32_t)kept++;
        kept_backward += i < p->n_backward && index[i] != UINT32_MAX;
        kids += index[i] != UINT32_MAX && !s->dense ? s->n_kids : 0;
    }
    uint32_t *kid_slots = malloc((kids + 1) * sizeof *kid_slots);
    if (!kid_slots) {
        free(index);
        return -1;
    }
    for (size_t i = 0, used = 0; i < p->n_steps; i++) {
        cg_step s = p->steps[i];
        if (index[i] == UINT32_MAX)
            continue;
        if (!s.dense) {
            memcpy(kid_slots + used, p->kid_slots + s.kids, s.n_kids * sizeof *kid_slots);
            s.kids = used;
            used += s.n_kids;
        }
        p->steps[index[i]] = s;
    }
    for (size_t e = 0; e < p->n_forward_entries; e++)
        if (p->forward_schedule[e] >= 0)
            p->forward_schedule[e] = index[p->forward_schedule[e]];
    for (size_t e = 0; e < p->n_backward_entries; e++)
        if (p->backward_schedule[e] >= 0)
            p->backward_schedule[e] = index[p->backward_schedule[e]];
    free(index);
    free(p->kid_slots);
    p->kid_slots = kid_slots;
    p->n_steps = kept;
    p->n_backward = kept_backward;
    cg_step *steps = realloc(p->steps, (kept + 1) * sizeof *steps);   /* smaller: kept */
    if (steps)
        p->steps = steps;
    return 0;
}

cg_plan *cg_plan_new(cg_node **nodes, size_t n, size_t n_backward, cg_node **queries,
                     size_t n_queries, uint32_t *query_slots, int find_layers)
{
    size_t total_kids = 0, max_gather = 1;
    cg_plan *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->exact = 1;
    for (size_t i = 0; i < n_queries; i++)
        queries[i]->mark = 0;  /* a node outside the plan may hold an old epoch */
    for (size_t i = 0; i < n; i++) {
        total_kids += nodes[i]->n_kids;
        nodes[i]->mark = 0;
        for (uint32_t j = 0; j < nodes[i]->n_kids; j++)
            cg_kids(nodes[i])[j]->mark = 0;
    }
    p->slot_node = malloc((n + total_kids + 1) * sizeof *p->slot_node);
    p->steps = calloc(n + 1, sizeof *p->steps);
    if (!p->slot_node || !p->steps)
        goto nomem;

    /* Parents first, dots' kids before anything else: a neuron's weights, and the
     * inputs of a sample's first dot, get consecutive slots. */
    for (size_t i = n; i-- > 0;)
        if (nodes[i]->op == CG_DOT)
            assign_dot_kids(p, nodes[i]);
    for (size_t i = n; i-- > 0;) {
        assign(p, nodes[i]);
        for (uint32_t j = 0; j < nodes[i]->n_kids; j++)
            assign(p, cg_kids(nodes[i])[j]);
    }

    /* Steps; a dense dot reads two runs and does not list its kids. */
    size_t kid_space = 0;
    uint8_t *row_runs = calloc(p->n_slots + 1, 1);
    if (!row_runs)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        cg_node *node = nodes[i];
        cg_step *s = &p->steps[i];
        s->out = slot_of(node);
        s->n_kids = node->n_kids;
        s->op = node->op;
        s->flags = node->flags;
        s->arg = (CG_OP_INFO[node->op].flags & CG_OPF_HAS_ARG) ? node->kids.ext.arg : 0.0;
        if (node->op == CG_DOT) {
            cg_dot_parts d = cg_dot_of(node);
            s->n_kids = 2 * d.m + (d.bias != NULL);
            s->dense = (uint8_t)dense_dot(node, s, row_runs);
            if (node->flags & CG_FLAG_ROWS) {
                s->rows[0] = slot_of(cg_kids(node)[0]);
                s->rows[1] = slot_of(cg_kids(node)[1]);
            }
        }
        if (!s->dense)
            kid_space += s->n_kids;
    }
    free(row_runs);
    p->kid_slots = malloc((kid_space + 1) * sizeof *p->kid_slots);
    if (!p->kid_slots)
        goto nomem;
    size_t used_kids = 0;
    for (size_t i = 0; i < n; i++) {
        cg_node *node = nodes[i];
        cg_step *s = &p->steps[i];
        if (s->dense)
            continue;
        s->kids = used_kids;
        if (node->op == CG_DOT) {
            cg_dot_parts d = cg_dot_of(node);
            for (uint32_t j = 0; j < d.m; j++)
                p->kid_slots[used_kids++] = slot_of(d.w[j]);
            for (uint32_t j = 0; j < d.m; j++)
                p->kid_slots[used_kids++] = slot_of(d.x[j]);
            if (d.bias)
                p->kid_slots[used_kids++] = slot_of(d.bias);
        } else {
            for (uint32_t j = 0; j < s->n_kids; j++)
                p->kid_slots[used_kids++] = slot_of(cg_kids(node)[j]);
        }
        if (cg_is_nary(node->op) && s->n_kids > max_gather)
            max_gather = s->n_kids;
    }
    p->n_steps = p->n_synced = n;
    p->n_backward = p->n_synced_backward = n_backward;

    /* Slots of nodes not in the list are leaves (or nodes treated as such). */
    uint8_t *interior = calloc(p->n_slots + 1, 1);
    p->leaf_slots = malloc((p->n_slots + 1) * sizeof *p->leaf_slots);
    p->val = calloc(p->n_slots + 1, sizeof *p->val);
    p->grad = calloc(p->n_slots + 1, sizeof *p->grad);
    p->scratch = malloc(max_gather * sizeof *p->scratch);
    if (!interior || !p->leaf_slots || !p->val || !p->grad || !p->scratch) {
        free(interior);
        goto nomem;
    }
    for (size_t i = 0; i < n; i++)
        interior[p->steps[i].out] = 1;
    for (size_t i = 0; i < n_queries; i++)  /* marks hold slot + 1 until just below */
        query_slots[i] = queries[i]->mark - 1;
    for (uint32_t s = 0; s < p->n_slots; s++)
        if (!interior[s])
            p->leaf_slots[p->n_leaves++] = s;
    free(interior);
    for (size_t s = 0; s < p->n_slots; s++)
        p->slot_node[s]->mark = 0;
    p->forward_out = malloc((n + 1) * sizeof *p->forward_out);
    p->backward_out = malloc((n_backward + 1) * sizeof *p->backward_out);
    if (!p->forward_out || !p->backward_out)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        p->forward_out[i] = p->steps[i].out;
    for (size_t i = 0; i < n_backward; i++)
        p->backward_out[i] = p->steps[i].out;
    if (!find_layers)
        return p;
    if (cg_plan_sort_by_node(p, p->leaf_slots, p->n_leaves) < 0
        || cg_plan_sort_by_node(p, p->forward_out, n) < 0
        || cg_plan_sort_by_node(p, p->backward_out, n_backward) < 0)
        goto nomem;
    if (cg_plan_layers(p) < 0 || cg_plan_find_interior_runs(p) < 0
        || cg_plan_fuse_losses(p) < 0) {
        cg_plan_free(p);
        return NULL;
    }
    if (!p->n_layers)   /* else the layers run the dots */
        cg_plan_mark_batches(p);
    return p;
nomem:
    for (size_t s = 0; s < p->n_slots; s++)
        p->slot_node[s]->mark = 0;
    cg_plan_free(p);
    return NULL;
}

size_t cg_plan_layer_count(const cg_plan *p)
{
    return p->n_layers;
}

size_t cg_plan_deferring_layers(const cg_plan *p)
{
    size_t count = 0;
    for (size_t i = 0; i < p->n_layers; i++)
        count += p->layers[i].defers_inputs != 0;
    return count;
}

size_t cg_plan_pending_input_layers(const cg_plan *p)
{
    size_t count = 0;
    for (size_t i = 0; i < p->n_layers; i++)
        count += p->layers[i].inputs_pending != 0;
    return count;
}

int cg_plan_defer_input_grads(cg_plan *p, const uint32_t *slots, size_t n)
{
    uint8_t *mask = calloc(p->n_slots + 1, 1);
    uint8_t *readers = calloc(p->n_slots + 1, 1);
    int result = -1;
    if (!mask || !readers)
        goto done;
    for (size_t i = 0; i < n; i++)
        if (slots[i] != UINT32_MAX)
            mask[slots[i]] = 1;
    if (cg_layers_mark_gradless(p, mask) < 0)
        goto done;
    /* A layer defers only input rows no step and no other layer writes to: then its
     * contributions, added late, are their only ones and keep their order. */
    for (size_t i = 0; i < p->n_written; i++)
        readers[p->written[i]] = 2;
    for (size_t i = 0; i < p->n_layers; i++) {
        cg_layer *l = &p->layers[i];
        for (size_t b = 0; l->inputs_without_grads && b < l->B; b++)
            for (size_t k = 0; k < l->m; k++) {
                uint8_t *r = &readers[l->x_run[b] + k];
                *r = *r < 2 ? *r + 1 : 2;
            }
    }
    for (size_t i = 0; i < p->n_layers; i++) {
        cg_layer *l = &p->layers[i];
        int alone = l->inputs_without_grads;
        for (size_t b = 0; alone && b < l->B; b++)
            for (size_t k = 0; alone && k < l->m; k++)
                alone = readers[l->x_run[b] + k] == 1;
        l->inputs_without_grads = l->defers_inputs = alone;
        if (alone && !(l->kept_w = malloc((size_t)l->K * l->m * sizeof *l->kept_w)))
            goto done;
    }
    p->n_written = 0;   /* no input's gradient is left at 0 */
    result = 0;
done:
    free(mask);
    free(readers);
    return result;
}

int cg_plan_skip_grads(cg_plan *p, const uint32_t *slots, size_t n)
{
    uint8_t *mask = calloc(p->n_slots + 1, 1);
    uint32_t *kept = malloc((n + 1) * sizeof *kept);
    if (!mask || !kept) {
        free(mask);
        free(kept);
        return -1;
    }
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (slots[i] != UINT32_MAX && !mask[slots[i]]) {
            mask[slots[i]] = 1;
            kept[count++] = slots[i];
        }
    int failed = cg_layers_mark_gradless(p, mask);
    free(mask);
    if (failed < 0) {
        free(kept);
        return -1;
    }
    free(p->gradless);
    p->gradless = kept;
    p->n_gradless = count;
    p->inputs_gradless = 1;
    return 0;
}
