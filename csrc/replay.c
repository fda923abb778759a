/* Replay: a recorded graph packed into a plan of steps over an array of slots.
 *
 * Every node the graph touches gets a slot in two contiguous arrays (val, grad), and
 * every interior node a step naming its kids by slot.  Slots are handed out so that a
 * neuron's weights, and the inputs a dot product reads, sit next to each other: such a
 * "dense" dot reads two runs of doubles instead of chasing 2n pointers.  The math is
 * op_math.h's; the order of every sum and of every gradient contribution is that of the
 * node-by-node sweep, so replay is bit for bit the same as rebuilding the graph. */
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

enum { BATCH_DOTS = CG_SIDE_BY_SIDE };

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
 * followed by its activation or not, [dot, act, dot, act, ...].  Up to BATCH_DOTS of them
 * become a batch whose dots forward() sums side by side (each sum in its own order, so
 * the values are the same; four independent chains of adds instead of one).  Valid only
 * if no dot of the batch reads a value the batch computes. */
void cg_plan_mark_batches(cg_plan *p)
{
    for (size_t i = 0; i < p->n_steps; i++) {
        const cg_step *first = &p->steps[i];
        if (!is_dense_dot(first))
            continue;
        size_t end = i;
        int dots = 0;
        while (end < p->n_steps && dots < BATCH_DOTS) {
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

static int is_param(const cg_plan *p, uint32_t slot)
{
    return slot < p->param_bits_slots && (p->param_bits[slot >> 3] >> (slot & 7)) & 1;
}

/* Whether two lists of slots, sorted by node address, name a node in common. */
static int meet(const cg_plan *a, const uint32_t *sa, size_t na, const cg_plan *b,
                const uint32_t *sb, size_t nb)
{
    size_t i = 0, j = 0;
    while (i < na && j < nb) {
        uintptr_t x = (uintptr_t)cg_plan_node(a, sa[i]), y = (uintptr_t)cg_plan_node(b, sb[j]);
        if (x == y)
            return 1;
        if (x < y)
            i++;
        else
            j++;
    }
    return 0;
}

int cg_plans_share_nodes(const cg_plan *a, const cg_plan *b)
{
    return meet(a, a->leaf_slots, a->n_leaves, b, b->leaf_slots, b->n_leaves)
        || meet(a, a->leaf_slots, a->n_leaves, b, b->forward_out, b->n_synced)
        || meet(a, a->forward_out, a->n_synced, b, b->leaf_slots, b->n_leaves)
        || meet(a, a->forward_out, a->n_synced, b, b->forward_out, b->n_synced);
}

/* Node k of a sorted list: nodes[k], or with slots, the node in plan p's slot k. */
static uintptr_t node_at(const uintptr_t *nodes, const cg_plan *p, const uint32_t *slots,
                         size_t k)
{
    return slots ? (uintptr_t)cg_plan_node(p, slots[k]) : nodes[k];
}

/* The first k in [i, n) whose node's address is >= x, found by galloping: a few steps
 * where two sorted lists lie in separate ranges of addresses, as the nodes of graphs
 * traced apart do. */
static size_t gallop(const uintptr_t *nodes, const cg_plan *p, const uint32_t *slots,
                     size_t i, size_t n, uintptr_t x)
{
    size_t step = 1, hi = i;
    while (hi < n && node_at(nodes, p, slots, hi) < x) {
        i = hi + 1;
        hi += step;
        step *= 2;
    }
    if (hi > n)
        hi = n;
    while (i < hi) {
        size_t mid = i + (hi - i) / 2;
        if (node_at(nodes, p, slots, mid) < x)
            i = mid + 1;
        else
            hi = mid;
    }
    return i;
}

static int meet_own(const cg_plan *a, const cg_plan *b, const uint32_t *sb, size_t nb)
{
    const uintptr_t *own = a->own_nodes;
    size_t i = 0, j = 0, na = a->n_own_nodes;
    while (i < na && j < nb) {
        uintptr_t x = own[i], y = (uintptr_t)cg_plan_node(b, sb[j]);
        if (x == y)
            return 1;
        if (x < y)
            i = gallop(own, NULL, NULL, i, na, y);
        else
            j = gallop(NULL, b, sb, j, nb, x);
    }
    return 0;
}

int cg_plans_share_nodes_beyond_params(const cg_plan *a, const cg_plan *b)
{
    if (!a->own_nodes)   /* no parameters marked: every node counts */
        return cg_plans_share_nodes(a, b);
    return meet_own(a, b, b->leaf_slots, b->n_leaves)
        || meet_own(a, b, b->forward_out, b->n_synced);
}

size_t cg_plan_slots(const cg_plan *p, cg_node ***nodes)
{
    *nodes = p->slot_node;
    return p->n_slots;
}

static cg_status forward_step(cg_plan *p, const cg_step *s)
{
    double *val = p->val;
    const uint32_t *k = p->kid_slots + s->kids;
    int has_bias = (s->flags & CG_FLAG_HAS_BIAS) != 0;
    uint32_t m = cg_step_dot_length(s);
    if (s->op == CG_DOT && s->dense) {
        return cg_dot_values(val + s->w, val + s->x, m, has_bias ? val[s->bias] : 0.0,
                             &val[s->out]);
    }
    if (cg_is_nary(s->op)) {
        double *v = p->scratch;
        for (uint32_t i = 0; i < s->n_kids; i++)
            v[i] = val[k[i]];
        if (s->op == CG_SUM)
            return cg_sum_values(v, s->n_kids, &val[s->out]);
        if (s->op == CG_LOGSUMEXP)
            return cg_logsumexp_values(v, s->n_kids, &val[s->out]);
        return cg_dot_values(v, v + m, m, has_bias ? v[2 * m] : 0.0, &val[s->out]);
    }
    if (CG_OP_INFO[s->op].flags & CG_OPF_NO_MATH) {
        val[s->out] = cg_plan_node(p, s->out)->data;
        return CG_OK;
    }
    return cg_forward_scalar(s->op, s->arg, val[k[0]], cg_is_binary(s->op) ? val[k[1]] : 0.0,
                             &val[s->out]);
}

/* The steps of a layer batch: its dots summed side by side, then its activations.  A
 * sum that is not finite leaves the batch undone (CG_ERR_OVERFLOW), and the caller runs
 * the steps one by one, which tells an overflow from an infinite input. */
static cg_status forward_batch(cg_plan *p, const cg_step *steps, size_t n)
{
    const cg_step *dots[BATCH_DOTS];
    const double *w[BATCH_DOTS];
    double sum[BATCH_DOTS];
    double *val = p->val;
    int count = 0;
    for (size_t i = 0; i < n; i++)
        if (steps[i].op == CG_DOT)
            dots[count++] = &steps[i];
    int has_bias = (dots[0]->flags & CG_FLAG_HAS_BIAS) != 0;
    for (int d = 0; d < BATCH_DOTS; d++) {  /* spare lanes redo the first dot */
        const cg_step *dot = dots[d < count ? d : 0];
        w[d] = val + dot->w;
        sum[d] = has_bias ? val[dot->bias] : 0.0;
    }
    const double *x = val + dots[0]->x;
    uint32_t m = cg_step_dot_length(dots[0]);
    cg_dot_values_side_by_side(w, x, m, sum);
    for (int d = 0; d < count; d++)
        if (!isfinite(sum[d]))
            return CG_ERR_OVERFLOW;
    for (int d = 0; d < count; d++)
        val[dots[d]->out] = sum[d];
    for (size_t i = 0; i < n; i++)
        if (steps[i].op != CG_DOT)
            forward_step(p, &steps[i]);  /* an activation that cannot fail */
    return CG_OK;
}

static cg_status backward_step(cg_plan *p, const cg_step *s);

/* The step of a layer's dot (j, b), as recording made it: a dense dot over the weight
 * row j (its bias after it) and the input row b. */
static cg_step layer_dot(const cg_layer *l, size_t cell)
{
    cg_step s;
    memset(&s, 0, sizeof s);
    uint32_t j = (uint32_t)(cell % l->K), b = (uint32_t)(cell / l->K);
    s.out = l->out[cell];
    s.op = CG_DOT;
    s.flags = (uint8_t)(CG_FLAG_ROWS | (l->has_bias ? CG_FLAG_HAS_BIAS : 0));
    s.dense = 1;
    s.n_kids = 2 * l->m + (uint32_t)(l->has_bias != 0);
    s.w = l->w_run[j];
    s.x = l->x_run[b];
    s.bias = l->w_run[j] + l->m;
    return s;
}

/* A layer's dots one by one, in sweep order (the fallback when the layer meets a
 * number not finite, so that errors are told as they always are); forward, then its
 * activation (whose backward ran before the dots': it never fails). */
static cg_status layer_steps(cg_plan *p, const cg_layer *l, int backward, cg_node **failed)
{
    size_t count = (size_t)l->K * l->B;
    for (size_t k = 0; k < count; k++) {
        cg_step dot = layer_dot(l, l->order[k]);
        cg_status st = backward ? backward_step(p, &dot) : forward_step(p, &dot);
        if (st != CG_OK) {
            *failed = cg_plan_node(p, dot.out);
            return st;
        }
    }
    for (size_t c = 0; c < count && l->act_out && !backward; c++)
        (void)cg_forward_scalar(l->act_op, l->act_arg, p->val[l->out[c]], 0.0,
                                &p->val[l->act_out[c]]);
    return CG_OK;
}

/* A loss row's steps one by one, in the order the sweep (or forward) meets them. */
static cg_status loss_row_steps(cg_plan *p, const cg_loss_row *r, int backward,
                                cg_node **failed)
{
    size_t first = r->l_step - r->m - 2, count = (size_t)r->m + 3;
    for (size_t k = 0; k < count; k++) {
        const cg_step *s = &p->steps[backward ? r->l_step - k : first + k];
        cg_status st = backward ? backward_step(p, s) : forward_step(p, s);
        if (st != CG_OK) {
            *failed = cg_plan_node(p, s->out);
            return st;
        }
    }
    return CG_OK;
}

/* Run a schedule of steps, loss rows and layers; a layer or row that meets a non-finite
 * number is run again step by step, which tells errors as they always are. */
static cg_status run_schedule(cg_plan *p, const cg_entry *schedule, size_t n, int backward,
                              cg_node **failed)
{
    cg_status st = CG_OK;
    for (size_t e = 0; e < n && st == CG_OK; e++) {
        cg_entry entry = schedule[e];
        if (entry >= CG_LOSS_ENTRY) {
            const cg_loss_row *r = &p->loss_rows[entry - CG_LOSS_ENTRY];
            if ((backward ? cg_loss_row_backward(p, r) : cg_loss_row_forward(p, r)) != 0)
                st = loss_row_steps(p, r, backward, failed);
        } else if (entry >= 0) {
            const cg_step *s = &p->steps[entry];
            st = backward ? backward_step(p, s) : forward_step(p, s);
            if (st != CG_OK)
                *failed = cg_plan_node(p, s->out);
        } else {
            cg_layer *l = &p->layers[-1 - entry];
            if ((backward ? cg_layer_backward(p, l) : cg_layer_forward(p, l)) != CG_OK) {
                p->fell_back |= backward;
                l->rows_zero &= !backward;
                st = layer_steps(p, l, backward, failed);  /* input gradients included */
            }
        }
    }
    return st;
}

cg_status cg_plan_forward(cg_plan *p, cg_node **failed)
{
    cg_status st = CG_OK;
    if (p->n_layers)
        return run_schedule(p, p->forward_schedule, p->n_forward_entries, 0, failed);
    for (size_t i = 0; i < p->n_steps; i++) {
        size_t batch = p->steps[i].batch;
        if (batch > 1 && forward_batch(p, &p->steps[i], batch) == CG_OK) {
            i += batch - 1;
            continue;
        }
        st = forward_step(p, &p->steps[i]);
        if (st != CG_OK) {
            *failed = cg_plan_node(p, p->steps[i].out);
            break;
        }
    }
    return st;
}

/* y[i] += x[i] * g for a run (y and x are in different arrays).  Returns 0, or NaN if
 * some contribution was inf or NaN (d - d is NaN exactly then).  The two accumulators
 * are the two lanes of a vector register, so the loop vectorizes without reordering
 * any floating-point sum. */
static double add_scaled(double *restrict y, const double *restrict x, uint32_t m, double g)
{
    double bad0 = 0.0, bad1 = 0.0;
    uint32_t i = 0;
    for (; i + 1 < m; i += 2) {
        double d0 = x[i] * g, d1 = x[i + 1] * g;
        y[i] += d0;
        y[i + 1] += d1;
        bad0 = bad0 + (d0 - d0);
        bad1 = bad1 + (d1 - d1);
    }
    if (i < m) {
        double d = x[i] * g;
        y[i] += d;
        bad0 = bad0 + (d - d);
    }
    return bad0 + bad1;
}

/* As cg_data_finite, over a step's slots: called on the error path only. */
static CG_NOINLINE int step_data_finite(const cg_plan *p, const cg_step *s)
{
    const double *val = p->val;
    if (!isfinite(val[s->out]))
        return 0;
    if (s->op == CG_DOT && s->dense) {
        uint32_t m = cg_step_dot_length(s);
        for (uint32_t i = 0; i < m; i++)
            if (!isfinite(val[s->w + i]) || !isfinite(val[s->x + i]))
                return 0;
        return !(s->flags & CG_FLAG_HAS_BIAS) || isfinite(val[s->bias]);
    }
    for (uint32_t i = 0; i < s->n_kids; i++)
        if (!isfinite(val[p->kid_slots[s->kids + i]]))
            return 0;
    return 1;
}

/* cg_kid_access over lists of a plan's slots */
static inline double slot_value(void *ctx, const void *list, uint32_t i)
{
    return ((cg_plan *)ctx)->val[((const uint32_t *)list)[i]];
}

/* cg_bad_contribution for a slot: its node is looked at only for a number not finite */
static inline int bad_contribution(const cg_plan *p, uint32_t slot, double d)
{
    return !isfinite(d) && !(cg_plan_node(p, slot)->flags & CG_FLAG_CONSTANT);
}

static inline int slot_add(void *ctx, const void *list, uint32_t i, double d)
{
    cg_plan *p = ctx;
    uint32_t slot = ((const uint32_t *)list)[i];
    p->grad[slot] += d;
    return bad_contribution(p, slot, d);
}

static cg_status backward_step(cg_plan *p, const cg_step *s)
{
    double *val = p->val, *grad = p->grad, g = grad[s->out], da, db;
    const uint32_t *k = p->kid_slots + s->kids;
    int has_bias = (s->flags & CG_FLAG_HAS_BIAS) != 0, bad = 0;
    uint32_t m = cg_step_dot_length(s);
    if (CG_OP_INFO[s->op].flags & CG_OPF_NO_MATH)
        return CG_OK;
    if (s->op == CG_DOT && s->dense) {   /* two runs of slots: a vector loop each */
        double nan_if_bad = add_scaled(grad + s->w, val + s->x, m, g)
                          + add_scaled(grad + s->x, val + s->w, m, g);
        bad = nan_if_bad != 0.0;
        if (has_bias)
            grad[s->bias] += g;
    } else if (cg_is_nary(s->op)) {
        cg_nary_kids kids = {k, k, k + m, has_bias ? k + 2 * m : NULL, s->n_kids, m};
        bad = cg_nary_backward(s->op, &kids, val[s->out], g, NULL,
                               (cg_kid_access){p, slot_value, slot_add});
    } else {
        int binary = cg_is_binary(s->op);
        cg_status st = cg_backward_scalar(s->op, s->arg, val[k[0]], binary ? val[k[1]] : 0.0,
                                          val[s->out], g, &da, &db);
        if (st != CG_OK)
            return st;
        grad[k[0]] += da;
        bad |= bad_contribution(p, k[0], da);
        if (binary) {
            grad[k[1]] += db;
            bad |= bad_contribution(p, k[1], db);
        }
    }
    return (bad && isfinite(g) && step_data_finite(p, s)) ? CG_ERR_OVERFLOW : CG_OK;
}

cg_status cg_plan_backward(cg_plan *p, cg_node **failed)
{
    cg_status st = CG_OK;
    size_t nb = p->n_backward;
    if (nb == 0)
        return CG_OK;
    cg_plan_input_grads(p);   /* the last backward's, which this one's add to */
    for (size_t r = 0; r < p->n_interior_runs; r++)
        memset(p->grad + p->interior_runs[2 * r], 0,
               p->interior_runs[2 * r + 1] * sizeof *p->grad);
    p->grad[p->steps[nb - 1].out] = 1.0;
    p->fell_back = 0;
    if (p->n_layers) {
        st = run_schedule(p, p->backward_schedule, p->n_backward_entries, 1, failed);
    } else {
        for (size_t i = nb; i-- > 0;) {
            st = backward_step(p, &p->steps[i]);
            if (st != CG_OK) {
                *failed = cg_plan_node(p, p->steps[i].out);
                break;
            }
        }
    }
    const uint32_t *zeroed = p->fell_back ? p->gradless : p->written;
    size_t n_zeroed = p->fell_back ? p->n_gradless : p->n_written;
    for (size_t i = 0; i < n_zeroed; i++)  /* not computed, whatever path ran */
        p->grad[zeroed[i]] = 0.0;
    return st;
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

void cg_plan_keep_weights(cg_plan *p)
{
    for (size_t i = 0; i < p->n_layers; i++) {
        cg_layer *l = &p->layers[i];
        if (!l->inputs_pending || l->weights_kept)
            continue;
        for (size_t j = 0; j < l->K; j++)
            memcpy(l->kept_w + j * l->m, p->val + l->w_run[j], l->m * sizeof *l->kept_w);
        l->weights_kept = 1;
    }
}

void cg_plan_input_grads(cg_plan *p)
{
    for (size_t i = 0; i < p->n_layers; i++)
        if (p->layers[i].inputs_pending)
            cg_layer_input_grads(p, &p->layers[i]);
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

static void reload(cg_plan *p, int interior, int except_params)
{
    for (size_t j = 0; j < p->n_leaves; j++) {
        uint32_t s = p->leaf_slots[j];
        if (except_params && is_param(p, s))
            continue;
        cg_node *n = cg_plan_node(p, s);
        p->val[s] = n->data;
        p->grad[s] = n->grad;
    }
    for (size_t j = 0; interior && j < p->n_synced; j++)
        p->val[p->forward_out[j]] = cg_plan_node(p, p->forward_out[j])->data;
    for (size_t i = 0; i < p->n_gradless; i++)  /* 0 whatever a node was given */
        p->grad[p->gradless[i]] = 0.0;
    for (size_t i = 0; i < p->n_layers; i++)    /* the nodes' grads, whatever they are */
        p->layers[i].rows_zero = 0;
}

static void sync(cg_plan *p, int except_params)
{
    cg_plan_input_grads(p);
    for (size_t j = 0; j < p->n_leaves; j++) {
        uint32_t s = p->leaf_slots[j];
        if (except_params && is_param(p, s))
            continue;
        cg_node *n = cg_plan_node(p, s);
        n->data = p->val[s];
        n->grad = p->grad[s];
    }
    for (size_t j = 0; j < p->n_synced; j++)
        cg_plan_node(p, p->forward_out[j])->data = p->val[p->forward_out[j]];
    for (size_t i = 0; i < p->n_synced_backward; i++)
        cg_plan_node(p, p->backward_out[i])->grad = p->grad[p->backward_out[i]];
}

void cg_plan_reload(cg_plan *p, int interior) { reload(p, interior, 0); }
void cg_plan_sync(cg_plan *p) { sync(p, 0); }
void cg_plan_reload_except_params(cg_plan *p, int interior) { reload(p, interior, 1); }
void cg_plan_sync_except_params(cg_plan *p) { sync(p, 1); }

int cg_plan_mark_params(cg_plan *p, const uint32_t *slots, size_t n)
{
    free(p->param_bits);
    free(p->own_nodes);
    p->own_nodes = NULL;
    p->param_bits_slots = p->n_own_nodes = 0;
    p->param_bits = calloc(p->n_slots / 8 + 1, 1);
    if (!p->param_bits)
        return -1;
    p->param_bits_slots = p->n_slots;
    for (size_t i = 0; i < n; i++)
        if (slots[i] < p->n_slots)
            p->param_bits[slots[i] >> 3] |= (uint8_t)(1u << (slots[i] & 7));
    /* the two lists sorted by node address, merged, less parameters and rows */
    p->own_nodes = malloc((p->n_leaves + p->n_synced + 1) * sizeof *p->own_nodes);
    if (!p->own_nodes)
        return -1;
    size_t i = 0, j = 0;
    while (i < p->n_leaves || j < p->n_synced) {
        uint32_t s;
        if (j == p->n_synced || (i < p->n_leaves
                                 && (uintptr_t)cg_plan_node(p, p->leaf_slots[i])
                                        < (uintptr_t)cg_plan_node(p, p->forward_out[j])))
            s = p->leaf_slots[i++];
        else
            s = p->forward_out[j++];
        const cg_node *node = cg_plan_node(p, s);
        if (!is_param(p, s) && cg_base_op(node) != CG_ROW)
            p->own_nodes[p->n_own_nodes++] = (uintptr_t)node;
    }
    return 0;
}

void cg_plan_reload_params(cg_plan *p, const uint32_t *slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cg_node *node = cg_plan_node(p, slots[i]);
        p->val[slots[i]] = node->data;
        p->grad[slots[i]] = node->grad;
    }
}

void cg_plan_take_params(cg_plan *to, const uint32_t *to_slots, const cg_plan *from,
                         const uint32_t *from_slots, size_t n, int zero_grads)
{
    double *restrict val = to->val, *restrict grad = to->grad;
    const double *restrict from_val = from->val, *restrict from_grad = from->grad;
    if (zero_grads) {
        for (size_t i = 0; i < n; i++) {
            val[to_slots[i]] = from_val[from_slots[i]];
            grad[to_slots[i]] = 0.0;
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t t = to_slots[i], f = from_slots[i];
        val[t] = from_val[f];
        grad[t] = from_grad[f];
    }
}

/* The slot of node n among slots[0..count), sorted by node address; UINT32_MAX if absent. */
static uint32_t find_slot(const cg_plan *p, const uint32_t *slots, size_t count,
                        const cg_node *n)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const cg_node *at = cg_plan_node(p, slots[mid]);
        if (at == n)
            return slots[mid];
        if ((uintptr_t)at < (uintptr_t)n)
            lo = mid + 1;
        else
            hi = mid;
    }
    return UINT32_MAX;
}

/* Whether a slot is an input of a layer whose input gradients are pending. */
static int awaits_input_grad(const cg_plan *p, uint32_t slot)
{
    for (size_t i = 0; i < p->n_layers; i++) {
        const cg_layer *l = &p->layers[i];
        if (!l->inputs_pending)
            continue;
        for (uint32_t b = 0; b < l->B; b++)
            if (slot >= l->x_run[b] && slot - l->x_run[b] < l->m)
                return 1;
    }
    return 0;
}

static int sync_node(cg_plan *p, cg_node *n, int except_params)
{
    uint32_t slot = find_slot(p, p->leaf_slots, p->n_leaves, n);
    if (slot != UINT32_MAX && except_params && is_param(p, slot))
        return 0;   /* another plan holds it */
    if (slot != UINT32_MAX) {
        if (awaits_input_grad(p, slot))
            cg_plan_input_grads(p);
        n->data = p->val[slot];
        n->grad = p->grad[slot];
        return 1;
    }
    slot = find_slot(p, p->forward_out, p->n_synced, n);
    if (slot == UINT32_MAX)
        return 0;
    n->data = p->val[slot];
    if (find_slot(p, p->backward_out, p->n_synced_backward, n) != UINT32_MAX)
        n->grad = p->grad[slot];
    return 1;
}

int cg_plan_sync_node(cg_plan *p, cg_node *n) { return sync_node(p, n, 0); }

int cg_plan_sync_node_except_params(cg_plan *p, cg_node *n) { return sync_node(p, n, 1); }

/* Over the slots kept in step with their nodes: a recorded plan's every slot, a tiled
 * plan's parameters (its other slots stand for a template's nodes). */
static void mark_synced(cg_plan *p, int set)
{
    for (size_t j = 0; j < p->n_leaves; j++)
        cg_plan_node(p, p->leaf_slots[j])->mark = set ? p->leaf_slots[j] + 1 : 0;
    for (size_t j = 0; j < p->n_synced; j++)
        cg_plan_node(p, p->forward_out[j])->mark = set ? p->forward_out[j] + 1 : 0;
}

void cg_plan_find_slots(cg_plan *p, cg_node **nodes, size_t n, uint32_t *slots)
{
    mark_synced(p, 1);
    for (size_t i = 0; i < n; i++)
        slots[i] = nodes[i]->mark - 1;  /* UINT32_MAX: not in the plan */
    for (size_t i = 0; i < n; i++)
        nodes[i]->mark = 0;
    mark_synced(p, 0);
}

int cg_plan_add_leaves(cg_plan *p, cg_node **nodes, size_t n, uint32_t *slots)
{
    size_t added = 0, total = p->n_slots;
    size_t stored = total - cg_plan_unstored(p);   /* entries of slot_node */
    for (size_t i = 0; i < n; i++)
        added += slots[i] == UINT32_MAX;
    if (!added)
        return 0;
    if (total + added >= UINT32_MAX)
        return -1;
    cg_node **slot_node = realloc(p->slot_node, (stored + added + 1) * sizeof *slot_node);
    if (slot_node)
        p->slot_node = slot_node;
    double *val = realloc(p->val, (total + added + 1) * sizeof *val);
    if (val)
        p->val = val;
    double *grad = realloc(p->grad, (total + added + 1) * sizeof *grad);
    if (grad)
        p->grad = grad;
    uint32_t *leaf_slots = realloc(p->leaf_slots,
                                   (p->n_leaves + added + 1) * sizeof *leaf_slots);
    if (leaf_slots)
        p->leaf_slots = leaf_slots;
    if (!slot_node || !val || !grad || !leaf_slots)
        return -1;   /* the plan as it was (arrays only grew) */
    uint32_t *leaves_by_node = malloc((p->n_leaves + added + 1) * sizeof *leaves_by_node);
    if (!leaves_by_node)
        return -1;
    memcpy(leaves_by_node, p->leaf_slots, p->n_leaves * sizeof *leaves_by_node);
    size_t n_leaves = p->n_leaves;
    for (size_t i = 0; i < n; i++) {
        if (slots[i] != UINT32_MAX)
            continue;
        slots[i] = (uint32_t)total;
        p->slot_node[stored++] = nodes[i];
        p->val[total] = nodes[i]->data;
        p->grad[total] = nodes[i]->grad;
        leaves_by_node[n_leaves++] = (uint32_t)total++;
    }
    if (cg_plan_sort_by_node(p, leaves_by_node, n_leaves) < 0) {
        free(leaves_by_node);
        for (size_t i = 0; i < n; i++)   /* back to "not in the plan" */
            if (slots[i] >= p->n_slots)
                slots[i] = UINT32_MAX;
        return -1;
    }
    memcpy(p->leaf_slots, leaves_by_node, n_leaves * sizeof *leaves_by_node);
    free(leaves_by_node);
    p->n_leaves = n_leaves;
    p->n_slots = total;
    return 0;
}

void cg_plan_arrays(cg_plan *p, double **val, double **grad)
{
    *val = p->val;
    *grad = p->grad;
}

size_t cg_slot_runs(const uint32_t *slots, size_t n, uint32_t *runs)
{
    size_t count = 0;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && slots[i] != UINT32_MAX && slots[j] == slots[i] + (j - i); j++)
            ;
        if (slots[i] != UINT32_MAX) {
            runs[2 * count] = (uint32_t)i;
            runs[2 * count + 1] = (uint32_t)(j - i);
            count++;
        }
    }
    return count;
}

void cg_plan_load(cg_plan *p, const uint32_t *slots, const uint32_t *runs, size_t n_runs,
                  const double *data)
{
    for (size_t i = 0; i < p->n_layers; i++) {  /* fresh leaves: the last ones are dropped */
        p->layers[i].inputs_pending = p->layers[i].weights_kept = 0;
        p->layers[i].rows_zero = !p->inputs_gradless;
    }
    for (size_t r = 0; r < n_runs; r++) {   /* an input row sits in a run */
        uint32_t i = runs[2 * r], len = runs[2 * r + 1];
        memcpy(p->val + slots[i], data + i, len * sizeof *data);
        if (!p->inputs_gradless)
            memset(p->grad + slots[i], 0, len * sizeof *p->grad);
    }
}

double cg_plan_root_value(const cg_plan *p)
{
    return p->n_backward ? p->val[p->steps[p->n_backward - 1].out] : 0.0;
}

void cg_gather(cg_node **nodes, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = nodes[i]->data;
}
