/* A plan and the nodes it stands for: which plans share nodes, numbers handed between
 * a plan and its nodes (all of them, all but the parameters, one node), parameters
 * handed plan to plan, and batches loaded into the input slots. */
#include <stdlib.h>
#include <string.h>
#include "cgrad.h"
#include "plan.h"

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
