/* Layers over a batch, found in a recorded graph and replayed as matrix-matrix work.
 *
 * A graph built as `[model(x) for x in xs]` holds, per layer, one dot node per neuron
 * and example, each over a shared weight row and a shared input row.  The recorded
 * order walks the examples one by one; the layer-major order that batching needs is
 * another topological order: steps sorted by level (the longest path from the loss).
 * The gradients stay bit for bit those of the node-by-node sweep if every slot still
 * receives its contributions in the same order.  That is checked here, once, at record
 * time, at the cost of the rows and the steps (not of rows times examples):
 *   - every contribution through a row comes from dots of one level;
 *   - along the sweep, each slot's direct contributions come at non-decreasing levels,
 *     and those to a row's items fall wholly before or after the row's own dots;
 *   - within a layer, every neuron meets the examples in one order, and every example
 *     the neurons in one order (then each weight's sum runs over the examples in that
 *     order, and each input's over the neurons).
 * Where any of this fails, the plan keeps the recorded order and runs step by step. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cpu.h"
#include "layer_kernels.h"
#include "op_math.h"
#include "plan.h"
#include "threads.h"

#define NONE UINT32_MAX

static int is_row_dot(const cg_step *s)
{
    return s->op == CG_DOT && s->dense && (s->flags & CG_FLAG_ROWS);
}

/* Calls visit(slot) for every slot a step adds gradient to directly (not via rows). */
#define FOR_EACH_DIRECT_KID(p, s, slot, body)                                         \
    do {                                                                              \
        if ((s)->op == CG_DOT && (s)->dense) {                                        \
            uint32_t m_ = cg_step_dot_length(s);                                      \
            for (uint32_t i_ = 0; i_ < 2 * m_; i_++) {                                \
                uint32_t slot = i_ < m_ ? (s)->w + i_ : (s)->x + i_ - m_;             \
                body;                                                                 \
            }                                                                         \
            if ((s)->flags & CG_FLAG_HAS_BIAS) {                                      \
                uint32_t slot = (s)->bias;                                            \
                body;                                                                 \
            }                                                                         \
        } else {                                                                      \
            for (uint32_t i_ = 0; i_ < (s)->n_kids; i_++) {                           \
                uint32_t slot = (p)->kid_slots[(s)->kids + i_];                       \
                body;                                                                 \
            }                                                                         \
        }                                                                             \
    } while (0)

typedef struct {
    cg_plan *p;
    size_t n, nb;            /* steps; steps that the backward sweep runs */
    uint32_t *step_of;       /* [n_slots] step + 1 of the node in a slot, 0 for a leaf */
    uint32_t *level;         /* [n] */
    uint32_t *row_level;     /* [n] for a row step: the level of the dots reading it */
    uint32_t *row_first, *row_last;  /* [n] their first and last sweep positions */
    uint32_t *row_of;        /* [n_slots] row step + 1 owning the slot, 0 none */
    uint32_t *last_level;    /* [n_slots] level + 1 of the last direct contribution */
    int32_t *layer_of;       /* [n] the layer a step belongs to, -1 none, FUSED */
} finder;

enum { FUSED = -2 };         /* an activation run by its layer: not scheduled itself */

static uint32_t sweep_pos(const finder *f, size_t i) { return (uint32_t)(f->nb - 1 - i); }

static void compute_levels(finder *f)
{
    cg_plan *p = f->p;
    for (size_t i = f->n; i-- > 0;) {  /* parents come later in the recorded order */
        const cg_step *s = &p->steps[i];
        uint32_t next = f->level[i] + 1;
#define RAISE(slot_expr)                                                             \
        do {                                                                          \
            uint32_t t_ = f->step_of[slot_expr];                                      \
            if (t_ && f->level[t_ - 1] < next)                                        \
                f->level[t_ - 1] = next;                                              \
        } while (0)
        if (is_row_dot(s)) {
            RAISE(s->rows[0]);
            RAISE(s->rows[1]);
        } else {
            FOR_EACH_DIRECT_KID(p, s, k, RAISE(k));
        }
#undef RAISE
    }
}

/* The checks of the header comment, over the backward sweep.  1 if they hold. */
static int order_is_kept(finder *f)
{
    cg_plan *p = f->p;
    for (size_t i = f->nb; i-- > 0;) {
        const cg_step *s = &p->steps[i];
        if (!is_row_dot(s))
            continue;
        for (int r = 0; r < 2; r++) {
            uint32_t row = f->step_of[s->rows[r]] - 1;
            if (f->row_level[row] == NONE) {
                f->row_level[row] = f->level[i];
                f->row_first[row] = sweep_pos(f, i);
            } else if (f->row_level[row] != f->level[i]) {
                return 0;
            }
            f->row_last[row] = sweep_pos(f, i);
        }
    }
    for (size_t r = 0; r < f->nb; r++) {  /* a slot belongs to at most one such row */
        const cg_step *s = &p->steps[r];
        if (s->op != CG_ROW || f->row_level[r] == NONE)
            continue;
        for (uint32_t j = 0; j < s->n_kids; j++) {
            uint32_t slot = p->kid_slots[s->kids + j];
            if (f->row_of[slot])
                return 0;
            f->row_of[slot] = (uint32_t)r + 1;
        }
    }
    for (size_t i = f->nb; i-- > 0;) {
        const cg_step *s = &p->steps[i];
        if (is_row_dot(s) || s->op == CG_ROW)
            continue;
        uint32_t level = f->level[i], pos = sweep_pos(f, i);
        int ok = 1;
        FOR_EACH_DIRECT_KID(p, s, k, {
            if (f->last_level[k] > level + 1)
                ok = 0;
            f->last_level[k] = level + 1;
            uint32_t row = f->row_of[k];
            if (row) {
                uint32_t rl = f->row_level[row - 1];
                if (level == rl || (level < rl && pos > f->row_first[row - 1])
                    || (level > rl && pos < f->row_last[row - 1]))
                    ok = 0;
            }
        });
        if (!ok)
            return 0;
    }
    return 1;
}

typedef struct {
    uint32_t level, m, flags, pos, step;
} candidate;

static int by_level_then_pos(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->level != y->level)
        return x->level < y->level ? -1 : 1;
    if (x->m != y->m)
        return x->m < y->m ? -1 : 1;
    if (x->flags != y->flags)
        return x->flags < y->flags ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void free_layer(cg_layer *l)
{
    free(l->w_run);
    free(l->x_run);
    free(l->out);
    free(l->order);
    free(l->act_out);
    free(l->kept_w);
}

/* Whether every neuron meets the examples in their numbered order, and every example
 * the neurons (rank: the sweep position of cell b * K + j).  Neurons and examples are
 * numbered by first meeting, so this is exactly "all meet the others in one order". */
static int numbered_order_kept(const uint32_t *rank, uint32_t K, uint32_t B)
{
    for (uint32_t b = 0; b < B; b++)
        for (uint32_t j = 1; j < K; j++)
            if (rank[(size_t)b * K + j - 1] > rank[(size_t)b * K + j])
                return 0;
    for (uint32_t b = 1; b < B; b++)
        for (uint32_t j = 0; j < K; j++)
            if (rank[(size_t)(b - 1) * K + j] > rank[(size_t)b * K + j])
                return 0;
    return 1;
}

/* Make a layer of the candidates cands[0..count) (one level, one length), if they are
 * a full K x B grid of weight rows and input rows met in consistent orders.  1 made,
 * 0 not a layer, -1 out of memory. */
static int make_layer(finder *f, const candidate *cands, size_t count, uint32_t *index,
                      cg_layer *l)
{
    cg_plan *p = f->p;
    uint32_t K = 0, B = 0;
    int result = -1;
    memset(l, 0, sizeof *l);
    /* number the weight rows and input rows by first meeting (index: slot -> number) */
    for (size_t c = 0; c < count; c++) {
        const cg_step *s = &p->steps[cands[c].step];
        if (index[s->w] == NONE)
            index[s->w] = K++;
        if (index[s->x] == NONE)
            index[s->x] = B++;
    }
    uint32_t *rank = NULL;
    if ((size_t)K * B != count || K == 0 || B == 0) {
        result = 0;
        goto done;
    }
    l->K = K;
    l->B = B;
    l->m = cands[0].m;
    l->has_bias = (cands[0].flags & CG_FLAG_HAS_BIAS) != 0;
    l->w_run = malloc(K * sizeof *l->w_run);
    l->x_run = malloc(B * sizeof *l->x_run);
    l->out = malloc(count * sizeof *l->out);
    l->order = malloc(count * sizeof *l->order);
    rank = malloc(count * sizeof *rank);
    if (!l->w_run || !l->x_run || !l->out || !l->order || !rank)
        goto done;
    for (size_t c = 0; c < count; c++)
        rank[c] = NONE;
    for (size_t c = 0; c < count; c++) {
        const cg_step *s = &p->steps[cands[c].step];
        uint32_t j = index[s->w], b = index[s->x];
        size_t cell = (size_t)b * K + j;
        if (rank[cell] != NONE) {  /* the same pair twice */
            result = 0;
            goto done;
        }
        rank[cell] = (uint32_t)c;
        l->w_run[j] = s->w;
        l->x_run[b] = s->x;
        l->out[cell] = s->out;
        l->order[c] = (uint32_t)cell;
    }
    result = numbered_order_kept(rank, K, B);
    for (size_t c = 0; result == 1 && c < count; c++)
        f->layer_of[cands[c].step] = (int32_t)p->n_layers;
done:
    for (size_t c = 0; c < count; c++) {
        const cg_step *s = &p->steps[cands[c].step];
        index[s->w] = index[s->x] = NONE;
    }
    free(rank);
    if (result != 1)
        free_layer(l);
    return result;
}

/* The step reading each slot: step + 1 if exactly one step reads it, 0 if none, NONE
 * if several. */
static uint32_t *find_readers(const cg_plan *p, size_t n)
{
    uint32_t *reader = calloc(p->n_slots + 1, sizeof *reader);
    if (!reader)
        return NULL;
#define READ_BY(slot_expr)                                                           \
    do {                                                                              \
        uint32_t r_ = (slot_expr);                                                    \
        reader[r_] = reader[r_] == 0 ? (uint32_t)i + 1 : NONE;                        \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        const cg_step *s = &p->steps[i];
        if (is_row_dot(s)) {
            READ_BY(s->rows[0]);
            READ_BY(s->rows[1]);
        } else {
            FOR_EACH_DIRECT_KID(p, s, k, READ_BY(k));
        }
    }
#undef READ_BY
    return reader;
}

/* Give layer l its activation if every dot's only reader is one and the same unary op
 * that cannot fail (see cg_layer).  0 done or not possible, -1 out of memory. */
static int fuse_activation(finder *f, cg_layer *l, const uint32_t *reader)
{
    const cg_plan *p = f->p;
    size_t count = (size_t)l->K * l->B;
    const cg_step *first = NULL;
    for (size_t c = 0; c < count; c++) {
        uint32_t r = reader[l->out[c]];
        if (r == 0 || r == NONE || f->layer_of[r - 1] != -1)
            return 0;
        const cg_step *act = &p->steps[r - 1];
        if (!(CG_OP_INFO[act->op].flags & CG_OPF_CANNOT_FAIL) || act->n_kids != 1)
            return 0;
        if (!first)
            first = act;
        else if (act->op != first->op || memcmp(&act->arg, &first->arg, sizeof act->arg))
            return 0;
    }
    l->act_out = malloc(count * sizeof *l->act_out);
    if (!l->act_out)
        return -1;
    l->act_op = first->op;
    l->act_arg = first->arg;
    for (size_t c = 0; c < count; c++) {
        uint32_t step = reader[l->out[c]] - 1;
        l->act_out[c] = p->steps[step].out;
        f->layer_of[step] = FUSED;
    }
    return 0;
}

static int find_layers(finder *f)
{
    cg_plan *p = f->p;
    size_t limit = f->nb ? f->nb : f->n, count = 0, max_layers = 0;
    candidate *cands = malloc((limit + 1) * sizeof *cands);
    uint32_t *index = malloc((p->n_slots + 1) * sizeof *index);
    int result = -1;
    if (!cands || !index)
        goto done;
    for (size_t s = 0; s < p->n_slots; s++)
        index[s] = NONE;
    for (size_t i = limit; i-- > 0;) {
        const cg_step *s = &p->steps[i];
        if (is_row_dot(s))
            cands[count++] = (candidate){f->level[i], cg_step_dot_length(s), s->flags,
                                         (uint32_t)(limit - 1 - i), (uint32_t)i};
    }
    qsort(cands, count, sizeof *cands, by_level_then_pos);
    for (size_t a = 0, b; a < count; a = b) {
        for (b = a; b < count && cands[b].level == cands[a].level && cands[b].m == cands[a].m
                    && cands[b].flags == cands[a].flags; b++)
            ;
        if (b - a >= 2)
            max_layers++;
    }
    p->layers = calloc(max_layers + 1, sizeof *p->layers);
    if (!p->layers)
        goto done;
    for (size_t a = 0, b; a < count; a = b) {
        for (b = a; b < count && cands[b].level == cands[a].level && cands[b].m == cands[a].m
                    && cands[b].flags == cands[a].flags; b++)
            ;
        if (b - a < 2)
            continue;
        cg_layer *l = &p->layers[p->n_layers];
        int made = make_layer(f, cands + a, b - a, index, l);
        if (made < 0)
            goto done;
        p->n_layers += made == 1;
    }
    uint32_t *reader = p->n_layers ? find_readers(p, f->n) : NULL;
    if (p->n_layers && !reader)
        goto done;
    for (size_t i = 0; i < p->n_layers; i++)
        if (fuse_activation(f, &p->layers[i], reader) < 0) {
            free(reader);
            goto done;
        }
    free(reader);
    result = 0;
done:
    free(cands);
    free(index);
    return result;
}

/* Steps [0, n) sorted by level (ascending: the sweep; descending: forward), ties in
 * sweep order; a layer stands once, where its first step would.  Rows are left out:
 * their step copies the row node's data, 0.0 for good (a row is not reachable from
 * Python), and passes no gradient. */
static cg_entry *schedule(finder *f, size_t n, int sweep, size_t *len)
{
    uint32_t max_level = 0;
    for (size_t i = 0; i < n; i++)
        if (f->level[i] > max_level)
            max_level = f->level[i];
    size_t *start = calloc((size_t)max_level + 2, sizeof *start);
    uint32_t *sorted = malloc((n + 1) * sizeof *sorted);
    cg_entry *out = malloc((n + 1) * sizeof *out);
    uint8_t *emitted = calloc(f->p->n_layers + 1, 1);
    if (!start || !sorted || !out || !emitted) {
        free(out);
        out = NULL;
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        start[f->level[i] + 1]++;
    for (uint32_t l = 0; l <= max_level; l++)
        start[l + 1] += start[l];
    for (size_t i = n; i-- > 0;)  /* sweep order within a level */
        sorted[start[f->level[i]]++] = (uint32_t)i;
    *len = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t i = sorted[sweep ? k : n - 1 - k];
        int32_t layer = f->layer_of[i];
        if (layer == -1 && f->p->steps[i].op != CG_ROW)
            out[(*len)++] = i;
        else if (layer >= 0 && !emitted[layer]) {
            emitted[layer] = 1;
            out[(*len)++] = -1 - (cg_entry)layer;
        }
    }
done:
    free(start);
    free(sorted);
    free(emitted);
    return out;
}

void cg_plan_free_layers(cg_plan *p)
{
    for (size_t i = 0; i < p->n_layers; i++)
        free_layer(&p->layers[i]);
    free(p->layers);
    free(p->forward_schedule);
    free(p->backward_schedule);
    free(p->layer_scratch);
    free(p->panels);
    p->layers = NULL;
    p->forward_schedule = p->backward_schedule = NULL;
    p->layer_scratch = NULL;
    p->panels = NULL;
    p->n_layers = 0;
}

int cg_plan_set_threads(cg_plan *p, size_t threads)
{
    if (threads < 1 || threads > CG_MAX_THREADS)
        return -1;
    size_t bytes = threads * CG_KERNEL_PANEL * sizeof(double);
    double *panels = p->n_layers ? malloc(bytes) : NULL;
    if (p->n_layers && !panels)
        return -1;
    free(p->panels);
    p->panels = panels;
    p->threads = threads;
    return 0;
}

void cg_plan_set_exact(cg_plan *p, int exact)
{
    p->exact = exact != 0;
}

/* The row length of the gradients copied neuron by neuron for the weight-gradient
 * kernel (cg_layer_backward): B rounded up to whole cache lines, an odd number of them. */
static size_t by_neuron_stride(size_t B)
{
    size_t lines = (B + 7) / 8;
    return 8 * (lines | 1);
}

int cg_plan_layers(cg_plan *p)
{
    finder f = {p, p->n_steps, p->n_backward, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL};
    int result = -1;
    size_t n = f.n, slots = p->n_slots + 1;
    if (n == 0)
        return 0;
    f.step_of = calloc(slots, sizeof *f.step_of);
    f.level = calloc(n, sizeof *f.level);
    f.row_level = malloc(n * sizeof *f.row_level);
    f.row_first = calloc(n, sizeof *f.row_first);
    f.row_last = calloc(n, sizeof *f.row_last);
    f.row_of = calloc(slots, sizeof *f.row_of);
    f.last_level = calloc(slots, sizeof *f.last_level);
    f.layer_of = malloc(n * sizeof *f.layer_of);
    if (!f.step_of || !f.level || !f.row_level || !f.row_first || !f.row_last || !f.row_of
        || !f.last_level || !f.layer_of)
        goto done;
    for (size_t i = 0; i < n; i++) {
        f.step_of[p->steps[i].out] = (uint32_t)i + 1;
        f.row_level[i] = NONE;
        f.layer_of[i] = -1;
    }
    compute_levels(&f);
    result = 0;
    if (f.nb && !order_is_kept(&f))
        goto done;
    if (find_layers(&f) < 0) {
        result = -1;
        goto done;
    }
    if (p->n_layers == 0)
        goto done;
    size_t scratch = 0;
    for (size_t i = 0; i < p->n_layers; i++) {
        const cg_layer *l = &p->layers[i];
        size_t K = l->K, B = l->B, m = l->m;
        /* forward: out (K B), biases (K), row pointers (K + B); backward: g (K B),
         * bias sums (K), saved gradients (K (m + 1) + B m), row pointers (3 (K + B)),
         * g by neuron (K rows) */
        size_t need = K * B + K + K * (m + 1) + B * m + 3 * (K + B) + K * by_neuron_stride(B);
        if (need > scratch)
            scratch = need;
    }
    p->layer_scratch = malloc(scratch * sizeof *p->layer_scratch);
    p->threads = 1;
    p->panels = malloc(CG_KERNEL_PANEL * sizeof *p->panels);
    p->forward_schedule = schedule(&f, n, 0, &p->n_forward_entries);
    p->backward_schedule = f.nb ? schedule(&f, f.nb, 1, &p->n_backward_entries) : NULL;
    if (!p->layer_scratch || !p->panels || !p->forward_schedule
        || (f.nb && !p->backward_schedule)) {
        result = -1;
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        if (f.layer_of[i] != -1)
            p->steps[i].batch = CG_IN_LAYER;
done:
    if (result < 0 || !p->forward_schedule)
        cg_plan_free_layers(p);
    free(f.step_of);
    free(f.level);
    free(f.row_level);
    free(f.row_first);
    free(f.row_last);
    free(f.row_of);
    free(f.last_level);
    free(f.layer_of);
    return result;
}

/* ---- running a layer ---------------------------------------------------------------- */

/* The op is a constant in each case, so that every loop is the op's own. */
#define FOR_EACH_ACTIVATION(op, ...)                                                \
    switch (op) {                                                                   \
    case CG_RELU: { const uint8_t OP = CG_RELU; __VA_ARGS__; break; }               \
    case CG_TANH: { const uint8_t OP = CG_TANH; __VA_ARGS__; break; }               \
    case CG_SIGMOID: { const uint8_t OP = CG_SIGMOID; __VA_ARGS__; break; }         \
    default: { const uint8_t OP = op; __VA_ARGS__; break; }                         \
    }

/* The dots' values from the kernel's table into their slots, and the activations', for
 * cells [c0, c1).  Both the table and the slots (an example's dots and activations sit
 * in runs) are walked example by example. */
CG_FLATTEN static void store_outputs(const cg_layer *l, const double *out, double *val,
                                     size_t c0, size_t c1)
{
    double arg = l->act_arg;
    if (!l->act_out) {
        for (size_t c = c0; c < c1; c++)
            val[l->out[c]] = out[c];
        return;
    }
    FOR_EACH_ACTIVATION(l->act_op, {
        for (size_t c = c0; c < c1; c++) {
            val[l->out[c]] = out[c];
            (void)cg_forward_scalar(OP, arg, out[c], 0.0, &val[l->act_out[c]]);
        }
    });
}

/* The dots' gradients into the table g, for cells [c0, c1); with an activation, its
 * contributions, which are the dots' only ones: the sweep would add them to a zeroed
 * gradient, so the layer writes 0.0 + da (-0.0 becomes +0.0 there too) and backward
 * does not zero these. */
CG_FLATTEN static void gather_gradients(const cg_layer *l, const double *val, double *grad,
                                        double *g, size_t c0, size_t c1)
{
    double arg = l->act_arg, da, db;
    if (!l->act_out) {
        for (size_t c = c0; c < c1; c++)
            g[c] = grad[l->out[c]];
        return;
    }
    FOR_EACH_ACTIVATION(l->act_op, {
        for (size_t c = c0; c < c1; c++) {
            uint32_t act = l->act_out[c], dot = l->out[c];
            (void)cg_backward_scalar(OP, arg, val[dot], 0.0, val[act], grad[act], &da, &db);
            g[c] = grad[dot] = 0.0 + da;
        }
    });
}

/* ---- the kernels in parts (threads.h): each part writes its own rows of the output */

typedef struct {
    const double *const *w, *bias;
    const double *const *x;
    size_t K, B, m;
    double *out, *panels;
    int exact;
    int finite[CG_MAX_THREADS];
} dot_job;

static void dot_part(void *arg, size_t part, size_t n)
{
    dot_job *j = arg;
    size_t b0 = cg_part_start(j->B, 8, part, n), b1 = cg_part_start(j->B, 8, part + 1, n);
    j->finite[part] = cg_dot_tiles(j->exact, j->w, j->K, j->bias, j->x + b0, b1 - b0, j->m,
                                   j->out + b0 * j->K, j->panels + part * CG_KERNEL_PANEL);
}

typedef struct {
    double *const *c;
    const double *const *a;
    const double *coef;
    double *const *saved;
    size_t n_r, n_k, rs, ks, m;
    double *panels;
    int exact;
    /* or NULL: coef (rows of rs, ks 1) is first filled, each part its own rows, from
     * this table of n_k rows of n_r coefficients */
    const double *untransposed;
    int finite[CG_MAX_THREADS];
} rank_job;

/* Rows r0..r1 of `rows` (stride rs) from columns r0..r1 of `table` (n rows of `cols`),
 * eight rows at a time: eight streams written in order while the table's rows are
 * read a cache line each, a constant stride apart. */
static void transpose_rows(const double *table, size_t n, size_t cols, size_t r0, size_t r1,
                           double *rows, size_t rs)
{
    for (size_t i0 = r0; i0 < r1; i0 += 8) {
        size_t i1 = i0 + 8 < r1 ? i0 + 8 : r1;
        for (size_t k = 0; k < n; k++)
            for (size_t i = i0; i < i1; i++)
                rows[i * rs + k] = table[k * cols + i];
    }
}

static void rank_part(void *arg, size_t part, size_t n)
{
    rank_job *j = arg;
    size_t r0 = cg_part_start(j->n_r, 6, part, n), r1 = cg_part_start(j->n_r, 6, part + 1, n);
    if (j->untransposed)
        transpose_rows(j->untransposed, j->n_k, j->n_r, r0, r1, (double *)j->coef, j->rs);
    j->finite[part] = cg_rank_update(j->exact, j->c + r0, r1 - r0, j->a, j->n_k,
                                     j->coef + r0 * j->rs, j->rs, j->ks, j->m,
                                     j->saved ? j->saved + r0 : NULL,
                                     j->panels + part * CG_KERNEL_PANEL);
}

static int all_parts_finite(const int *finite, size_t n)
{
    int all = 1;
    for (size_t part = 0; part < n; part++)
        all &= finite[part];
    return all;
}

/* ---- the passes around the kernels, in parts: each part its own cells, rows or
 * neurons, every number computed as one thread computes it (the same bits) */

/* A cell of these passes costs about as much as this many of a kernel's multiply-adds
 * (~10 ns against ~0.04), for deciding when a pass is big enough to split. */
enum { CELL_WORK = 256 };

typedef struct {
    const cg_layer *l;
    const double *out;            /* store: the kernel's table */
    double *val, *grad, *g;       /* gather: the gradients' table */
    int gather;
} cells_job;

static void cells_part(void *arg, size_t part, size_t n)
{
    cells_job *j = arg;
    size_t count = (size_t)j->l->K * j->l->B;
    size_t c0 = cg_part_start(count, 64, part, n), c1 = cg_part_start(count, 64, part + 1, n);
    if (j->gather)
        gather_gradients(j->l, j->val, j->grad, j->g, c0, c1);
    else
        store_outputs(j->l, j->out, j->val, c0, c1);
}

static void run_cells(cg_plan *p, cells_job *job)
{
    size_t count = (size_t)job->l->K * job->l->B;
    cg_run_parts(cg_plan_parts(p, count * CELL_WORK), cells_part, job);
}

static int dot_tiles(const cg_plan *p, const double *const *w, size_t K, const double *bias,
                     const double *const *x, size_t B, size_t m, double *out)
{
    dot_job job = {w, bias, x, K, B, m, out, p->panels, p->exact, {0}};
    size_t parts = cg_plan_parts(p, K * B * m);
    cg_run_parts(parts, dot_part, &job);
    return all_parts_finite(job.finite, parts);
}

static int rank_update(const cg_plan *p, double *const *c, size_t n_r,
                       const double *const *a, size_t n_k, const double *coef, size_t rs,
                       size_t ks, size_t m, double *const *saved, const double *untransposed)
{
    rank_job job = {.c = c, .a = a, .coef = coef, .saved = saved, .n_r = n_r, .n_k = n_k,
                    .rs = rs, .ks = ks, .m = m, .panels = p->panels, .exact = p->exact,
                    .untransposed = untransposed};
    size_t parts = cg_plan_parts(p, n_r * n_k * m);
    cg_run_parts(parts, rank_part, &job);
    return all_parts_finite(job.finite, parts);
}

cg_status cg_layer_forward(cg_plan *p, const cg_layer *l)
{
    size_t K = l->K, B = l->B, m = l->m;
    double *val = p->val, *out = p->layer_scratch, *bias = out + K * B;
    const double **w = (const double **)(void *)(bias + K), **x = w + K;
    for (size_t b = 0; b < B; b++)
        x[b] = val + l->x_run[b];
    for (size_t j = 0; j < K; j++) {
        w[j] = val + l->w_run[j];
        bias[j] = l->has_bias ? w[j][m] : 0.0;
    }
    if (!dot_tiles(p, w, K, l->has_bias ? bias : NULL, x, B, m, out))
        return CG_ERR_OVERFLOW;
    cells_job store = {l, out, val, NULL, NULL, 0};
    run_cells(p, &store);
    return CG_OK;
}

/* The largest |x[i]|'s bits; inf's or above if one is inf or NaN.  Compared as integers
 * (a double's bits without the sign order as its magnitude does, NaN above inf), four
 * side by side, in a baseline copy and a vector (AVX2) one. */
#define ABS_MAX_BODY                                                                  \
    int64_t most[4] = {0, 0, 0, 0};                                                   \
    size_t i = 0;                                                                     \
    for (; i + 4 <= n; i += 4)                                                        \
        for (int k = 0; k < 4; k++) {                                                 \
            int64_t bits;                                                             \
            memcpy(&bits, x + i + k, sizeof bits);                                    \
            bits &= INT64_MAX;                                                        \
            most[k] = bits > most[k] ? bits : most[k];                                \
        }                                                                             \
    for (; i < n; i++) {                                                              \
        int64_t bits;                                                                 \
        memcpy(&bits, x + i, sizeof bits);                                            \
        bits &= INT64_MAX;                                                            \
        most[0] = bits > most[0] ? bits : most[0];                                    \
    }                                                                                 \
    for (int k = 1; k < 4; k++)                                                       \
        most[0] = most[k] > most[0] ? most[k] : most[0];                              \
    return most[0];

static int64_t abs_max_bits_baseline(const double *restrict x, size_t n) { ABS_MAX_BODY }

#ifdef CG_X86_COPIES
CG_TARGET_AVX2 static int64_t abs_max_bits_avx2(const double *restrict x, size_t n)
{
    ABS_MAX_BODY
}
#endif

/* The largest |x[i]|; inf if one is inf or NaN. */
static double abs_max(const double *x, size_t n)
{
#ifdef CG_X86_COPIES
    int64_t bits = cg_has_avx2() ? abs_max_bits_avx2(x, n) : abs_max_bits_baseline(x, n);
#else
    int64_t bits = abs_max_bits_baseline(x, n);
#endif
    if (bits >= (int64_t)0x7FF0000000000000)   /* inf's bits, or NaN's */
        return INFINITY;
    double largest;
    memcpy(&largest, &bits, sizeof largest);
    return largest;
}

/* Whether the layer's input gradients, added to rows whose grads are 0, stay finite for
 * sure: |sum_j w[j][i] g[b][j]| <= max |w| * max_b sum_j |g[b][j]|, every partial sum
 * too, and rounding cannot take a bound below DBL_MAX / 4 past DBL_MAX.  An inf or NaN
 * among them says no.  One pass over the weights: 0.6% of an MLP(784, [256, 128, 10])
 * b128 step (perf, Zen 4). */
static int input_grads_bounded(const cg_plan *p, const cg_layer *l, const double *g)
{
    double w_max = 0.0, g_max = 0.0;
    for (size_t j = 0; j < l->K; j++) {
        double row = abs_max(p->val + l->w_run[j], l->m);
        w_max = row > w_max ? row : w_max;
    }
    for (size_t b = 0; b < l->B; b++) {
        double sum = 0.0;
        for (size_t j = 0; j < l->K; j++)
            sum += fabs(g[b * l->K + j]);
        sum = sum == sum ? sum : INFINITY;
        g_max = sum > g_max ? sum : g_max;
    }
    return w_max * g_max < DBL_MAX / 4;
}

cg_status cg_layer_backward(cg_plan *p, cg_layer *l)
{
    size_t K = l->K, B = l->B, m = l->m, wlen = m + (size_t)l->has_bias;
    double *val = p->val, *grad = p->grad;
    double *g = p->layer_scratch;
    double *bias_sums = g + K * B, *saved_w = bias_sums + K;
    double *saved_x = saved_w + K * wlen;
    double **rows = (double **)(void *)(saved_x + B * m), **saved = rows + K + B;
    const double **sources = (const double **)(void *)(saved + K + B);
    double *by_neuron = (double *)(void *)(sources + K + B);
    cells_job gather = {l, NULL, val, grad, g, 1};
    run_cells(p, &gather);
    int inputs = !l->inputs_without_grads;
    int defer = l->defers_inputs && l->rows_zero && input_grads_bounded(p, l, g);
    if (l->defers_inputs && !defer)
        inputs = 1;   /* now, with the checks */

    for (size_t j = 0; j < K; j++) {
        rows[j] = grad + l->w_run[j];
        saved[j] = saved_w + j * wlen;
    }
    for (size_t b = 0; b < B; b++)
        sources[b] = val + l->x_run[b];
    /* neuron j's coefficients for the examples b, g[b K + j], are first copied into a
     * row of their own (each part its neurons): the kernel's six broadcasts then read
     * six rows in order rather than one row of the table 2 KiB on each term.  Zen 4,
     * MLP(784, [256, 128, 10]) b512, the first layer's update in place, copy included:
     * exact 5.0-5.3 ms against 5.3-5.6 reading the table, exact=False 4.6-4.9 against
     * 4.9.  The rows lie an odd
     * number of cache lines apart: at 4 KiB apart they would all fall in one L1 set. */
    int finite = rank_update(p, rows, K, sources, B, by_neuron, by_neuron_stride(B), 1, m,
                             saved, g);
    if (l->has_bias) {
        for (size_t j = 0; j < K; j++)
            bias_sums[j] = saved_w[j * wlen + m] = grad[l->w_run[j] + m];
        for (size_t b = 0; b < B; b++)      /* every bias's sum over b, side by side */
            for (size_t j = 0; j < K; j++)
                bias_sums[j] = bias_sums[j] + g[b * K + j];
        double bad = 0.0;
        for (size_t j = 0; j < K; j++) {
            grad[l->w_run[j] + m] = bias_sums[j];
            bad = bad + (bias_sums[j] - bias_sums[j]);
        }
        finite &= bad == 0.0;
    }
    if (inputs && finite) {
        for (size_t b = 0; b < B; b++) {
            rows[b] = grad + l->x_run[b];
            saved[b] = saved_x + b * m;
        }
        for (size_t j = 0; j < K; j++)
            sources[j] = val + l->w_run[j];
        finite = rank_update(p, rows, B, sources, K, g, K, 1, m, saved, NULL);
        if (!finite)
            for (size_t b = 0; b < B; b++)
                memcpy(grad + l->x_run[b], saved_x + b * m, m * sizeof *grad);
    }
    if (finite) {
        l->inputs_pending = defer;
        l->rows_zero &= !inputs;
        return CG_OK;
    }
    for (size_t j = 0; j < K; j++)
        memcpy(grad + l->w_run[j], saved_w + j * wlen, wlen * sizeof *grad);
    return CG_ERR_OVERFLOW;
}

void cg_layer_input_grads(cg_plan *p, cg_layer *l)
{
    size_t K = l->K, B = l->B, m = l->m, wlen = m + (size_t)l->has_bias;
    double *grad = p->grad, *g = p->layer_scratch;
    /* the scratch laid out as cg_layer_backward lays it out */
    double *saved_x = g + K * B + K + K * wlen;
    double **rows = (double **)(void *)(saved_x + B * m);
    const double **sources = (const double **)(void *)(rows + 2 * (K + B));
    for (size_t c = 0; c < K * B; c++)
        g[c] = grad[l->out[c]];     /* the dots' gradients, as backward gathered them */
    for (size_t b = 0; b < B; b++)
        rows[b] = grad + l->x_run[b];
    for (size_t j = 0; j < K; j++)
        sources[j] = l->weights_kept ? l->kept_w + j * m : p->val + l->w_run[j];
    /* finite: backward deferred them only once input_grads_bounded said so */
    (void)rank_update(p, rows, B, sources, K, g, K, 1, m, NULL, NULL);
    l->inputs_pending = l->weights_kept = l->rows_zero = 0;
}

int cg_layers_mark_gradless(cg_plan *p, const uint8_t *gradless)
{
    uint8_t *hit = calloc(p->n_slots + 1, 1);
    if (!hit)
        return -1;
    size_t count = 0;
#define HIT(slot_expr)                                                               \
    do {                                                                              \
        uint32_t k_ = (slot_expr);                                                    \
        count += gradless[k_] && !hit[k_];                                            \
        hit[k_] |= gradless[k_];                                                      \
    } while (0)
    for (size_t i = 0; i < p->n_layers; i++) {
        cg_layer *l = &p->layers[i];
        int all = 1;
        for (size_t b = 0; b < l->B && all; b++)
            for (size_t k = 0; k < l->m && all; k++)
                all = gradless[l->x_run[b] + k];
        l->inputs_without_grads = all;
        if (p->n_backward == 0)
            continue;
        /* what its dots write, row by row rather than dot by dot (K B m kids) */
        for (size_t j = 0; j < l->K; j++)
            for (size_t k = 0; k < l->m + (size_t)l->has_bias; k++)
                HIT(l->w_run[j] + k);
        for (size_t b = 0; !all && b < l->B; b++)
            for (size_t k = 0; k < l->m; k++)
                HIT(l->x_run[b] + k);
    }
    for (size_t i = 0; i < p->n_backward; i++) {
        const cg_step *s = &p->steps[i];
        if (s->batch == CG_IN_LAYER || (CG_OP_INFO[s->op].flags & CG_OPF_NO_MATH))
            continue;   /* a layer's (above), or none */
        FOR_EACH_DIRECT_KID(p, s, k, HIT(k));
    }
#undef HIT
    free(p->written);
    p->written = malloc((count + 1) * sizeof *p->written);
    if (!p->written) {
        free(hit);
        return -1;
    }
    p->n_written = 0;
    for (size_t slot = 0; slot < p->n_slots; slot++)
        if (hit[slot])
            p->written[p->n_written++] = (uint32_t)slot;
    free(hit);
    return 0;
}
