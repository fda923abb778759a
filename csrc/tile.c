/* Tiling: the plan for a batch of any size, copied from one recorded over two examples.
 *
 * A training step over a batch is, for cgrad's losses, one graph per example summed by
 * one n-ary sum (and scaled by 1/batch): mean([loss(x_b, y_b) for b]).  backward()'s
 * search meets the examples one after another, so the recorded order is: the first
 * example's steps (with the steps every example shares, such as a neuron's row of
 * weights, where the first example meets them), the second example's, ..., then the
 * steps above the sum.  A plan recorded over two examples therefore holds everything
 * the plan over B examples holds: the second example's steps, copied B - 2 times with
 * their own slots, give examples 2..B-1, the sum gets B kids and the 1/2 it is scaled by
 * becomes 1/B.  The copy is checked step for step against the plan recorded over three
 * examples (cg_plans_match) before any other size is made: Python code that does
 * something else with the batch (a constant factor, a term coupling two examples) shows
 * there.  Python's sum() over the losses, ((L0 + 0) + L1) + ..., is copied the same
 * way: its add of the second loss is the second example's last step, and each copy's
 * adds its loss to the last copy's sum.  A graph without a loss (a prediction) is the
 * same without the sum: its outputs are one per example.  Nothing here reads a Value: the copy is memory traffic
 * (a few ms for a million slots; finding its layers costs more), where building and
 * recording the batch's graph costs ~0.5 s.  Not handled (refused): a node built per
 * example from the parameters alone (it depends on no example, so nothing tells it
 * from a shared one).
 *
 * Numbers: the tiled plan runs the steps a recorded plan over B examples would run, in
 * the same order, and its layers are found and proven by the same code (cg_plan_layers),
 * so its results are those of the eager graph over B examples, bit for bit. */
#include <stdlib.h>
#include <string.h>
#include "cgrad.h"
#include "node_ops.h"
#include "plan.h"

enum { SHARED = 0, FIRST = 1, SECOND = 2 };   /* a slot's example */

static const char NOT_PER_EXAMPLE[] =
    "the step is not one graph per example, the losses summed (by cgrad.sum, as cgrad's "
    "losses do, or by Python's sum()): the examples' graphs differ, or a term reads two "
    "examples";

struct cg_tiling {
    const cg_plan *p2;       /* recorded over two examples (kept alive by the caller) */
    uint8_t *example;        /* [slot] SHARED, FIRST or SECOND */
    uint32_t *rank;          /* [slot] a SECOND slot's place among them */
    uint32_t *second;        /* the SECOND slots in slot order */
    size_t n_second;
    size_t a, b;             /* the second example's steps: [a, b), copied per example */
    size_t sum;              /* the step summing the examples' losses (or SIZE_MAX) */
    uint32_t chain_out;      /* Python's sum() instead: the second example's running sum
                              * (its last step), which each copy adds its loss to */
    uint32_t mean;           /* the constant the sum is multiplied by (1/2), or -1 */
    uint32_t *inputs;        /* the recorded input slots, group by group, both examples */
    size_t *widths, n_groups, n_inputs;
    uint32_t *outputs;       /* the recorded output slots: the first example's, the second's */
    size_t n_outputs;        /* an example's */
};

/* The rows a dot over rows names besides its kids (0 or 2). */
static uint32_t row_count(const cg_step *s)
{
    return (s->op == CG_DOT && (s->flags & CG_FLAG_ROWS)) ? 2 : 0;
}

/* What a step is read, compared and classified by: a dot over rows by its two rows
 * (their own steps list the items, the bias last in the weights' row: one comparison
 * per row, not per dot), any other step by its kids. */
static uint32_t link_count(const cg_step *s)
{
    return row_count(s) ? 2 : s->n_kids;
}

static uint32_t link_at(const cg_plan *p, const cg_step *s, uint32_t i)
{
    return row_count(s) ? s->rows[i] : cg_step_kid(p, s, i);
}

/* Whether the m slots from `first` are all of one example (or all shared). */
static int one_class(const cg_tiling *t, uint32_t first, uint32_t m)
{
    for (uint32_t k = 1; k < m; k++)
        if (t->example[first + k] != t->example[first])
            return 0;
    return 1;
}

void cg_tiling_free(cg_tiling *t)
{
    if (!t)
        return;
    free(t->example);
    free(t->rank);
    free(t->second);
    free(t->inputs);
    free(t->widths);
    free(t->outputs);
    free(t);
}

static int is_constant(const cg_plan *p, uint32_t slot)
{
    return (p->slot_node[slot]->flags & CG_FLAG_CONSTANT) != 0;
}

/* Whether kid k0 of a first-example step and k1 of its second-example twin stand for
 * each other (twin[] maps first-example slots to second-example ones as they are met). */
static int twins(const cg_tiling *t, uint32_t *twin, uint8_t *taken, uint32_t k0, uint32_t k1)
{
    const cg_plan *p = t->p2;
    if (t->example[k0] == SHARED)
        return k1 == k0;
    if (t->example[k0] != FIRST || t->example[k1] != SECOND)
        return 0;
    if (twin[k0] != UINT32_MAX)
        return twin[k0] == k1;
    /* a leaf of one example's own, not an input: a constant made per example */
    if (taken[k1] || !is_constant(p, k0) || !is_constant(p, k1)
        || p->slot_node[k0]->data != p->slot_node[k1]->data)
        return 0;
    twin[k0] = k1;
    taken[k1] = 1;
    return 1;
}

static int same_step(const cg_step *x, const cg_step *y)
{
    return x->op == y->op && x->flags == y->flags && x->n_kids == y->n_kids
        && x->dense == y->dense && memcmp(&x->arg, &y->arg, sizeof x->arg) == 0;
}

/* read_plan's working state over the two-example plan. */
typedef struct {
    cg_tiling *t;
    const cg_plan *p;
    uint8_t *dep;          /* t->example while reading: which examples a slot depends on */
    uint8_t *is_step;      /* [slot] a step's output */
    uint8_t *readers;      /* [slot] which examples the steps reading it depend on */
    uint8_t *taken;        /* [slot] a second-example slot already twinned */
    uint32_t *twin;        /* [slot] a first-example slot's twin in the second example */
    size_t a, b;           /* the second example's steps */
    int chain;             /* the losses are added by Python's sum() */
} reading;

/* Which examples each slot depends on (bits 1 and 2), and which examples read each leaf. */
static const char *find_dependence(reading *r)
{
    const cg_tiling *t = r->t;
    const cg_plan *p = r->p;
    for (size_t g = 0, at = 0; g < t->n_groups; at += 2 * t->widths[g], g++)
        for (size_t j = 0; j < t->widths[g]; j++) {
            uint32_t s0 = t->inputs[at + j], s1 = t->inputs[at + t->widths[g] + j];
            if ((s0 == UINT32_MAX) != (s1 == UINT32_MAX))
                return "an input one example reads is not read for the other";
            if (s0 != UINT32_MAX) {
                r->dep[s0] = 1;
                r->dep[s1] = 2;
            }
        }
    for (size_t i = 0; i < p->n_steps; i++) {
        const cg_step *s = &p->steps[i];
        uint8_t d = 0;
        for (uint32_t k = 0; k < link_count(s); k++)
            d |= r->dep[link_at(p, s, k)];
        r->dep[s->out] |= d;
        r->is_step[s->out] = 1;
    }
    for (size_t i = 0; i < p->n_steps; i++) {
        const cg_step *s = &p->steps[i];
        for (uint32_t k = 0; k < link_count(s); k++)
            r->readers[link_at(p, s, k)] |= r->dep[s->out];
    }
    return NULL;
}

/* The second example's steps, [a, b): one run, after every first-example step and
 * before every step reading both.  Then each slot's class. */
static const char *find_blocks(reading *r)
{
    cg_tiling *t = r->t;
    const cg_plan *p = r->p;
    size_t n = p->n_steps, first = 0, a = n, b = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t d = r->dep[p->steps[i].out];
        first += d == 1;
        if (d == 2) {
            a = i < a ? i : a;
            b = i + 1;
        }
    }
    /* Python's sum() over the losses, ((L0 + 0) + L1) + ...: its first add sits just
     * before the second example's steps (its first example's part), the next right
     * after them (the second example's: each copy adds its loss to the last sum). */
    int chain = 0;
    if (b != 0 && a > 0 && b < n && first == b - a + 1) {
        const cg_step *c1 = &p->steps[a - 1], *c2 = &p->steps[b];
        chain = r->dep[c1->out] == 1 && c1->op == CG_ADD && !c1->dense && c1->n_kids == 2
            && c2->op == CG_ADD && !c2->dense && c2->n_kids == 2
            && cg_step_kid(p, c2, 0) == c1->out && r->dep[cg_step_kid(p, c2, 1)] == 2;
    }
    if (b == 0 || b - a + (size_t)chain != first)
        return NOT_PER_EXAMPLE;
    for (size_t i = 0; i < n; i++) {
        uint8_t d = r->dep[p->steps[i].out];
        if ((i < a && d > 1) || (i >= a && i < b && d != 2) || (i >= b && (d == 1 || d == 2)))
            return NOT_PER_EXAMPLE;
    }
    for (uint32_t s = 0; s < p->n_slots; s++) {   /* dep becomes t->example */
        uint8_t d = r->is_step[s] || r->dep[s] ? r->dep[s] : r->readers[s];
        t->example[s] = d == 1 ? FIRST : d == 2 ? SECOND : SHARED;
    }
    t->chain_out = chain ? p->steps[b].out : UINT32_MAX;
    if (chain)
        t->example[t->chain_out] = SECOND;
    r->a = a;
    r->b = b;
    r->chain = chain;
    return NULL;
}

/* The i-th first-example step and the i-th second-example one: the same step over
 * twin slots (inputs by position, steps by place, per-example constants by value). */
static const char *match_twins(reading *r)
{
    cg_tiling *t = r->t;
    const cg_plan *p = r->p;
    for (uint32_t s = 0; s < p->n_slots; s++)
        r->twin[s] = UINT32_MAX;
    for (size_t g = 0, at = 0; g < t->n_groups; at += 2 * t->widths[g], g++)
        for (size_t j = 0; j < t->widths[g]; j++)
            if (t->inputs[at + j] != UINT32_MAX) {
                r->twin[t->inputs[at + j]] = t->inputs[at + t->widths[g] + j];
                r->taken[t->inputs[at + t->widths[g] + j]] = 1;
            }
    uint32_t checked_x = UINT32_MAX;   /* a layer's dots read one input run */
    for (size_t i = 0, j = r->a; i < r->a; i++) {
        const cg_step *s0 = &p->steps[i];
        if (t->example[s0->out] != FIRST || (r->chain && i + 1 == r->a))
            continue;
        const cg_step *s1 = &p->steps[j++];
        int same = same_step(s0, s1);
        for (uint32_t k = 0; same && k < link_count(s0); k++)
            same = twins(t, r->twin, r->taken, link_at(p, s0, k), link_at(p, s1, k));
        if (same && s0->op == CG_DOT && s0->dense) {   /* a copy's runs stay runs */
            uint32_t m = cg_step_dot_length(s1);
            same = one_class(t, s1->w, m) && (s1->x == checked_x || one_class(t, s1->x, m));
            checked_x = s1->x;
        }
        if (!same || r->taken[s1->out])
            return NOT_PER_EXAMPLE;
        r->twin[s0->out] = s1->out;
        r->taken[s1->out] = 1;
    }
    if (r->chain   /* the running sum adds the examples' twin losses */
        && r->twin[cg_step_kid(p, &p->steps[r->a - 1], 0)] != cg_step_kid(p, &p->steps[r->b], 1))
        return NOT_PER_EXAMPLE;
    r->b += (size_t)r->chain;   /* the running sum's add is the second example's last step */
    /* each output is an example's, its twin the second example's (or one shared) */
    for (size_t i = 0; i < t->n_outputs; i++) {
        uint32_t o0 = t->outputs[i], o1 = t->outputs[t->n_outputs + i];
        if (o0 == UINT32_MAX || !r->is_step[o0] || !(t->example[o0] == SHARED ? o1 == o0
                                  : t->example[o0] == FIRST && r->twin[o0] == o1))
            return "the outputs are not one entry per example, computed the same way for "
                   "every example";
    }
    return NULL;
}

/* Above the examples: one sum of their two losses reads them (or, with Python's sum(),
 * the running sum), nothing else does; without a loss, nothing does.  The sum times
 * 1/2 is a mean, to become 1/batch. */
static const char *find_sum(reading *r)
{
    cg_tiling *t = r->t;
    const cg_plan *p = r->p;
    t->sum = SIZE_MAX;
    t->mean = UINT32_MAX;
    for (size_t i = r->b; i < p->n_steps; i++) {
        const cg_step *s = &p->steps[i];
        int reads_examples = 0, reads_sum = 0;
        for (uint32_t k = 0; k < link_count(s); k++) {
            uint32_t kid = link_at(p, s, k);
            reads_sum |= kid == t->chain_out;
            reads_examples |= t->example[kid] != SHARED && kid != t->chain_out;
        }
        if (reads_sum && (s->dense || row_count(s)))
            return NOT_PER_EXAMPLE;   /* the running sum read through a run */
        if (!reads_examples)
            continue;
        if (p->n_backward == 0 || t->sum != SIZE_MAX || s->op != CG_SUM || s->n_kids != 2
            || t->example[cg_step_kid(p, s, 0)] != FIRST || !r->is_step[cg_step_kid(p, s, 0)]
            || r->twin[cg_step_kid(p, s, 0)] != cg_step_kid(p, s, 1))
            return NOT_PER_EXAMPLE;
        t->sum = i;
    }
    if (t->sum == SIZE_MAX && !r->chain && p->n_backward)
        return NOT_PER_EXAMPLE;
    uint32_t total = r->chain ? t->chain_out
                   : t->sum != SIZE_MAX ? p->steps[t->sum].out : UINT32_MAX;
    for (size_t i = r->b; i < p->n_steps && p->n_backward; i++) {
        const cg_step *s = &p->steps[i];
        if (s->op == CG_MUL && s->n_kids == 2 && cg_step_kid(p, s, 0) == total) {
            uint32_t c = cg_step_kid(p, s, 1);
            if (!r->is_step[c] && is_constant(p, c) && p->slot_node[c]->data == 0.5)
                t->mean = c;
        }
    }
    return NULL;
}

/* Classify the slots and check that the second example's steps copy the first's. */
static const char *read_plan(cg_tiling *t)
{
    const cg_plan *p = t->p2;
    reading r = {t, p, t->example, calloc(p->n_slots + 1, 1), calloc(p->n_slots + 1, 1),
                 calloc(p->n_slots + 1, 1), malloc((p->n_slots + 1) * sizeof(uint32_t)),
                 0, 0, 0};
    const char *why = !r.is_step || !r.readers || !r.taken || !r.twin ? "out of memory" : NULL;
    if (!why)
        why = find_dependence(&r);
    if (!why)
        why = find_blocks(&r);
    if (!why)
        why = match_twins(&r);
    if (!why)
        why = find_sum(&r);
    if (!why) {
        for (uint32_t s = 0; s < p->n_slots; s++)
            if (t->example[s] == SECOND) {
                t->rank[s] = (uint32_t)t->n_second;
                t->second[t->n_second++] = s;
            }
        t->a = r.a;
        t->b = r.b;
    }
    free(r.is_step);
    free(r.readers);
    free(r.taken);
    free(r.twin);
    return why;
}

cg_tiling *cg_tiling_new(const cg_plan *p2, const uint32_t *inputs, const size_t *widths,
                         size_t n_groups, const uint32_t *outputs, size_t n_outputs,
                         const char **why)
{
    *why = "out of memory";
    cg_tiling *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->p2 = p2;
    t->n_groups = n_groups;
    for (size_t g = 0; g < n_groups; g++)
        t->n_inputs += 2 * widths[g];
    t->example = calloc(p2->n_slots + 1, 1);
    t->rank = malloc((p2->n_slots + 1) * sizeof *t->rank);
    t->second = malloc((p2->n_slots + 1) * sizeof *t->second);
    t->inputs = malloc((t->n_inputs + 1) * sizeof *t->inputs);
    t->widths = malloc((n_groups + 1) * sizeof *t->widths);
    t->n_outputs = n_outputs;
    t->outputs = malloc((2 * n_outputs + 1) * sizeof *t->outputs);
    if (!t->example || !t->rank || !t->second || !t->inputs || !t->widths || !t->outputs) {
        cg_tiling_free(t);
        return NULL;
    }
    memcpy(t->inputs, inputs, t->n_inputs * sizeof *inputs);
    memcpy(t->widths, widths, n_groups * sizeof *widths);
    memcpy(t->outputs, outputs, 2 * n_outputs * sizeof *outputs);
    if (p2->n_steps == 0)
        *why = "nothing is computed from the examples (the loss is one of the inputs)";
    else if (p2->n_backward && p2->n_backward != p2->n_steps)
        *why = "outputs apart from the loss (outputs the loss does not read)";
    else
        *why = read_plan(t);
    if (*why) {
        cg_tiling_free(t);
        return NULL;
    }
    return t;
}

/* Where slot s of the second example sits in copy c (shared slots stay). */
static uint32_t slot_in(const cg_tiling *t, uint32_t s, size_t c)
{
    if (s == UINT32_MAX || t->example[s] != SECOND || c < 2)   /* c 1: the recorded one */
        return s;
    return (uint32_t)(t->p2->n_slots + (c - 2) * t->n_second + t->rank[s]);
}

static cg_step copy_step(const cg_tiling *t, const cg_step *s, size_t c)
{
    cg_step out = *s;
    out.batch = 0;
    out.out = slot_in(t, s->out, c);
    if (s->op == CG_DOT && s->dense) {
        out.w = slot_in(t, s->w, c);
        out.x = slot_in(t, s->x, c);
        if (s->flags & CG_FLAG_HAS_BIAS)
            out.bias = slot_in(t, s->bias, c);
    }
    for (uint32_t r = 0; r < row_count(s); r++)
        out.rows[r] = slot_in(t, s->rows[r], c);
    return out;
}

size_t cg_tiling_slots(const cg_tiling *t, size_t batch)
{
    return t->p2->n_slots + (batch - 2) * t->n_second;
}

cg_plan *cg_tiling_plan(const cg_tiling *t, size_t batch, uint32_t *input_slots,
                        uint32_t *output_slots, int find_layers)
{
    const cg_plan *p2 = t->p2;
    size_t copies = batch - 2, per_copy = t->b - t->a, kids_per_copy = 0;
    size_t n_slots = p2->n_slots + copies * t->n_second;
    size_t n_steps = p2->n_steps + copies * per_copy;
    if (batch < 2 || n_slots >= UINT32_MAX)
        return NULL;
    for (size_t i = t->a; i < t->b; i++)
        kids_per_copy += p2->steps[i].dense ? 0 : p2->steps[i].n_kids;
    size_t n_kids = 0;
    for (size_t i = 0; i < p2->n_steps; i++)
        n_kids += p2->steps[i].dense ? 0 : p2->steps[i].n_kids;
    n_kids += copies * (kids_per_copy + 1);
    cg_plan *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->exact = 1;
    size_t stored = p2->n_slots + (copies ? t->n_second : 0);   /* the first copy's */
    p->slot_node = malloc((stored + 1) * sizeof *p->slot_node);
    p->val = malloc((n_slots + 1) * sizeof *p->val);
    p->grad = calloc(n_slots + 1, sizeof *p->grad);
    p->steps = calloc(n_steps + 1, sizeof *p->steps);
    p->kid_slots = malloc((n_kids + 1) * sizeof *p->kid_slots);
    p->leaf_slots = malloc((p2->n_leaves + 1) * sizeof *p->leaf_slots);
    p->forward_out = malloc(sizeof *p->forward_out);
    p->backward_out = malloc(sizeof *p->backward_out);
    if (!p->slot_node || !p->val || !p->grad || !p->steps || !p->kid_slots
        || !p->leaf_slots || !p->forward_out || !p->backward_out)
        goto nomem;

    /* Slots: the recorded ones, then each copy's.  A copy's slots stand for the second
     * example's nodes (their ops and flags name a failing step in an error message),
     * stored once (cg_plan_node). */
    memcpy(p->slot_node, p2->slot_node, p2->n_slots * sizeof *p->slot_node);
    for (size_t s = 0; s < p2->n_slots; s++)   /* constants; the rest is loaded or computed */
        p->val[s] = p2->slot_node[s]->data;
    double *copy_val = p->val + p2->n_slots;
    for (size_t r = 0; copies && r < t->n_second; r++) {
        p->slot_node[p2->n_slots + r] = p2->slot_node[t->second[r]];
        copy_val[r] = p2->slot_node[t->second[r]]->data;
    }
    for (size_t c = 3; c < batch; c++)
        memcpy(copy_val + (c - 2) * t->n_second, copy_val, t->n_second * sizeof *copy_val);
    p->repeat_from = p->repeat_to = p2->n_slots;
    if (copies) {
        p->repeat_to = n_slots;
        p->period = t->n_second;
    }
    if (t->mean != UINT32_MAX)
        p->val[t->mean] = 1.0 / (double)batch;
    p->n_slots = n_slots;

    /* Steps in the order backward()'s search meets them over `batch` examples: the
     * copies come after the second example's steps (and before any above them). */
    size_t at = 0, used = 0;
    size_t max_gather = 1;
    for (size_t i = 0; i <= p2->n_steps; i++) {
        if (i == t->b)
            for (size_t c = 2; c < batch; c++)
                for (size_t j = t->a; j < t->b; j++) {
                    const cg_step *s = &p2->steps[j];
                    cg_step *d = &p->steps[at++];
                    *d = copy_step(t, s, c);
                    if (s->dense)
                        continue;
                    d->kids = used;
                    for (uint32_t k = 0; k < s->n_kids; k++)
                        p->kid_slots[used++] = slot_in(t, cg_step_kid(p2, s, k), c);
                    if (s->out == t->chain_out)   /* adds to the last copy's sum */
                        p->kid_slots[d->kids] = slot_in(t, t->chain_out, c - 1);
                }
        if (i == p2->n_steps)
            break;
        const cg_step *s = &p2->steps[i];
        cg_step *d = &p->steps[at++];
        *d = *s;
        d->batch = 0;
        if (s->dense)
            continue;
        d->kids = used;
        for (uint32_t k = 0; k < s->n_kids; k++) {   /* above the examples: the last sum */
            uint32_t kid = cg_step_kid(p2, s, k);
            p->kid_slots[used++] = i >= t->b && kid == t->chain_out && batch > 2
                                 ? slot_in(t, kid, batch - 1) : kid;
        }
        if (i == t->sum) {   /* the sum of every example's loss, in example order */
            for (size_t c = 2; c < batch; c++)
                p->kid_slots[used++] = slot_in(t, cg_step_kid(p2, s, 1), c);
            d->n_kids = (uint32_t)batch;
        }
    }
    for (size_t i = 0; i < n_steps; i++)
        if (cg_is_nary(p->steps[i].op) && !p->steps[i].dense && p->steps[i].n_kids > max_gather)
            max_gather = p->steps[i].n_kids;
    p->n_steps = n_steps;
    p->n_backward = p2->n_backward ? n_steps : 0;
    p->scratch = malloc(max_gather * sizeof *p->scratch);
    if (!p->scratch)
        goto nomem;

    /* The nodes it keeps in step with: the parameters (shared leaves that are not
     * constants), already sorted by address in the recorded plan. */
    for (size_t j = 0; j < p2->n_leaves; j++) {
        uint32_t s = p2->leaf_slots[j];
        if (t->example[s] == SHARED && !is_constant(p2, s))
            p->leaf_slots[p->n_leaves++] = s;
    }
    for (size_t g = 0, from = 0, to = 0; g < t->n_groups; from += 2 * t->widths[g], g++)
        for (size_t e = 0; e < batch; e++)
            for (size_t j = 0; j < t->widths[g]; j++) {
                uint32_t second = t->inputs[from + t->widths[g] + j];
                input_slots[to++] = e == 0 ? t->inputs[from + j]
                                  : e == 1 ? second : slot_in(t, second, e);
            }
    for (size_t e = 0, to = 0; e < batch; e++)
        for (size_t i = 0; i < t->n_outputs; i++) {
            uint32_t second = t->outputs[t->n_outputs + i];
            output_slots[to++] = e == 0 ? t->outputs[i] : e == 1 ? second
                               : slot_in(t, second, e);
        }
    if (!find_layers)
        return p;
    if (cg_plan_layers(p) < 0 || cg_plan_find_interior_runs(p) < 0
        || (p->n_layers && cg_plan_drop_layer_steps(p) < 0) || cg_plan_fuse_losses(p) < 0)
        goto nomem;
    if (!p->n_layers)   /* else the layers run the dots */
        cg_plan_mark_batches(p);
    return p;
nomem:
    cg_plan_free(p);
    return NULL;
}

/* Whether plan a (tiled) runs the steps plan b (recorded) runs: step for step the same
 * op over kids that correspond (a map from a's slots to b's, one to one, built as they
 * are met: inputs by position, the same node, or constants of the same value). */
int cg_plans_match(const cg_plan *a, const uint32_t *a_inputs, const cg_plan *b,
                   const uint32_t *b_inputs, size_t n_inputs, const uint32_t *a_outputs,
                   const uint32_t *b_outputs, size_t n_outputs)
{
    if (a->n_steps != b->n_steps || a->n_backward != b->n_backward)
        return 0;
    uint32_t *to = malloc((a->n_slots + 1) * sizeof *to);
    uint8_t *taken = calloc(b->n_slots + 1, 1);
    int same = to && taken;
    for (size_t s = 0; same && s < a->n_slots; s++)
        to[s] = UINT32_MAX;
    for (size_t i = 0; same && i < n_inputs; i++) {
        same = (a_inputs[i] == UINT32_MAX) == (b_inputs[i] == UINT32_MAX);
        if (same && a_inputs[i] != UINT32_MAX) {
            same = to[a_inputs[i]] == UINT32_MAX && !taken[b_inputs[i]];
            to[a_inputs[i]] = b_inputs[i];
            taken[b_inputs[i]] = 1;
        }
    }
    for (size_t i = 0; same && i < a->n_steps; i++) {
        const cg_step *x = &a->steps[i], *y = &b->steps[i];
        same = x->op == y->op && x->flags == y->flags && x->n_kids == y->n_kids
            && memcmp(&x->arg, &y->arg, sizeof x->arg) == 0;
        for (uint32_t k = 0; same && k < link_count(x); k++) {
            uint32_t u = link_at(a, x, k), v = link_at(b, y, k);
            if (to[u] != UINT32_MAX) {
                same = to[u] == v;
                continue;
            }
            const cg_node *nu = cg_plan_node(a, u), *nv = cg_plan_node(b, v);
            same = !taken[v] && (nu == nv
                || ((nu->flags & nv->flags & CG_FLAG_CONSTANT) && a->val[u] == nv->data));
            to[u] = v;
            taken[v] = 1;
        }
        if (same) {
            same = to[x->out] == UINT32_MAX && !taken[y->out];
            to[x->out] = y->out;
            taken[y->out] = 1;
        }
    }
    for (size_t i = 0; same && i < n_outputs; i++)
        same = a_outputs[i] != UINT32_MAX && to[a_outputs[i]] == b_outputs[i];
    free(to);
    free(taken);
    return same;
}
