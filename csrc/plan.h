/* The packed plan replay runs (private to the files that build, run and tile it). */
#ifndef CGRAD_PLAN_H
#define CGRAD_PLAN_H

#include "cgrad.h"
#include "op_math.h"   /* CG_SIDE_BY_SIDE */

typedef struct {
    uint32_t out;     /* this node's slot */
    uint32_t n_kids;
    size_t kids;      /* offset of its kids' slots in plan->kid_slots (not for dense) */
    uint32_t w, x;    /* a dense dot: first slot of the weights' run and of the inputs' */
    uint32_t bias;    /* a dense dot with bias: the bias's slot */
    uint32_t rows[2]; /* a dot over rows: the slots of its weight row and input row */
    uint8_t op, flags, dense;
    uint8_t batch;    /* forward: steps from here that run as one layer batch (0: none);
                       * with layers found, CG_IN_LAYER for the steps a layer runs */
    double arg;
} cg_step;

/* The most dots a layer batch (cg_step.batch) sums side by side. */
enum { CG_BATCH_DOTS = CG_SIDE_BY_SIDE };

/* A layer over a batch: the dense row dots of K weight rows times B input rows, run as
 * matrix-matrix work.  Neurons and examples are numbered in the order the node-by-node
 * sweep meets them, so every sum keeps that sweep's order: the weight rows' gradients
 * add the examples' contributions in example order, the input rows' gradients the
 * neurons' in neuron order.  Tables over cells are example-major: cell (j, b) is
 * b * K + j. */
typedef struct {
    uint32_t K, B, m;
    int has_bias;
    int inputs_without_grads;  /* its input rows are all leaves whose grads are not wanted,
                                * or (defers_inputs) not wanted yet */
    /* Input gradients on demand (Graph's input_grads=True): backward skips them, and
     * cg_plan_input_grads computes them, the same kernel in the same order, only when
     * some node is looked at.  defers_inputs: this layer is the only writer of its
     * input rows' grads; inputs_pending: the last backward skipped them; kept_w
     * (K x m): its weights as that backward saw them, once an optimizer step in the
     * plan changed them (weights_kept).  A backward defers them only when they
     * cannot overflow (rows_zero: the rows' grads are all 0, as a load leaves them, and
     * the weights and the dots' gradients bound every sum): eager would raise there,
     * and a deferred sum has no step left to raise in.  Otherwise it computes them at
     * once, with the checks. */
    int defers_inputs, inputs_pending, weights_kept, rows_zero;
    double *kept_w;
    uint32_t *w_run;        /* [K] first slot of neuron j's weights (its bias follows) */
    uint32_t *x_run;        /* [B] first slot of example b's inputs */
    uint32_t *out;          /* [K * B] the slot of dot (j, b) */
    uint32_t *order;        /* [K * B] the cells in sweep order */
    /* An activation run with the layer (act_out != NULL): when every dot's only reader
     * is a unary op that cannot fail, one op for all, its forward runs right after the
     * dots and its backward right before theirs (nothing else touches the dots' slots). */
    uint8_t act_op;
    double act_arg;
    uint32_t *act_out;      /* [K * B] the slot of the activation of dot (j, b) */
} cg_layer;

/* A step a layer runs (cg_step.batch once layers are found): its own entry is read only
 * to tell what it is, and a tiled plan drops such steps (cg_plan_drop_layer_steps). */
enum { CG_IN_LAYER = 255 };

/* A softmax cross-entropy over one row, as cgrad.losses builds it: the steps
 * d = dot(t, z), mp = d * c, a_j = z_j + mp (j < m), l = logsumexp(a), consecutive in
 * the plan (steps l_step - m - 2 .. l_step), run as one (fused_loss.c).  Its t, z and a
 * slots are loss_slots[at ..], m of each. */
typedef struct {
    uint32_t m, d, mp, c, l, l_step;
    size_t at;
} cg_loss_row;

/* A dot step's length m: it reads m weights and m inputs (and its bias, if it has one). */
static inline uint32_t cg_step_dot_length(const cg_step *s)
{
    return (s->n_kids - (uint32_t)((s->flags & CG_FLAG_HAS_BIAS) != 0)) / 2;
}

/* An entry of a schedule: a step (>= 0 and below CG_LOSS_ENTRY), a loss row
 * (CG_LOSS_ENTRY + its index) or a layer (-1 - its index). */
typedef int64_t cg_entry;
#define CG_LOSS_ENTRY ((cg_entry)1 << 40)

struct cg_plan {
    size_t n_slots, n_steps, n_backward, n_leaves;
    /* The node each slot stands for: slot_node[s], except in a tiled plan (tile.c),
     * whose copies of one example's slots, [repeat_from, repeat_to), stand for the
     * nodes of the first copy (period slots each) and are not stored: cg_plan_node. */
    cg_node **slot_node;
    size_t repeat_from, repeat_to, period;
    uint32_t *leaf_slots;  /* slots of leaves: read in before forward, grads written back */
    double *val, *grad;
    cg_step *steps;        /* interior nodes, kids first; the first n_backward feed root */
    uint32_t *kid_slots;
    double *scratch;       /* gathered kid values of a non-dense n-ary step */
    /* The slots whose numbers reach their nodes (cg_plan_sync), sorted by node address:
     * a recorded plan's every step (n_synced of them) and its first n_backward
     * (n_synced_backward); a tiled plan's none (its nodes are a template's: tile.c). */
    uint32_t *forward_out;
    uint32_t *backward_out;
    size_t n_synced, n_synced_backward;
    uint32_t *interior_runs; /* those same slots as runs of consecutive slots: (first, count) */
    size_t n_interior_runs;  /* pairs; backward zeroes their grads run by run */

    /* With layers found (n_layers > 0): the orders forward and backward run in. */
    size_t n_layers, n_forward_entries, n_backward_entries;
    cg_layer *layers;
    cg_entry *forward_schedule, *backward_schedule;
    double *layer_scratch;  /* room for the largest layer's gathered operands */
    size_t threads;         /* parts a layer's kernels are split into (Graph threads=) */
    int exact;              /* the kernels keep eager's bits (else FMA: Graph exact=False) */
    double *panels;         /* the kernels' work buffers, CG_KERNEL_PANEL per part */
    cg_loss_row *loss_rows; /* the loss rows the schedules run as one step each */
    uint32_t *loss_slots;
    size_t n_loss_rows;

    /* Leaves whose gradients are not computed (Graph(..., input_grads=False)): left at 0.
     * Backward re-zeroes those that steps outside the layers skipping them may write
     * (written, e.g. one-hot targets read by the loss), or all of them after a layer fell
     * back to its steps in this run (fell_back). */
    uint32_t *gradless, *written;
    size_t n_gradless, n_written;
    int inputs_gradless;   /* the inputs cg_plan_load fills are the gradless slots: their
                            * grads are 0 whenever a run starts (nothing to clear) */
    int fell_back;

    /* The slots of the optimizer bound to the plan (cg_plan_mark_params), a bit each for
     * the first param_bits_slots slots: a hand-over between two plans bound to one
     * optimizer moves them from plan to plan, past the nodes. */
    uint8_t *param_bits;
    size_t param_bits_slots;
    /* The nodes it keeps in step with but those parameters and rows (whose numbers
     * are 0 for good), by address: what it may hold that another plan reads. */
    uintptr_t *own_nodes;
    size_t n_own_nodes;
};

/* A step's i-th kid: a dense dot names runs (weights, inputs, then its bias), others
 * list their kids in plan->kid_slots. */
static inline uint32_t cg_step_kid(const cg_plan *p, const cg_step *s, uint32_t i)
{
    if (s->op == CG_DOT && s->dense) {
        uint32_t m = cg_step_dot_length(s);
        return i < m ? s->w + i : i < 2 * m ? s->x + (i - m) : s->bias;
    }
    return p->kid_slots[s->kids + i];
}

/* Slots not stored in slot_node: all copies' but the first. */
static inline size_t cg_plan_unstored(const cg_plan *p)
{
    return p->repeat_to - p->repeat_from - p->period;
}

static inline cg_node *cg_plan_node(const cg_plan *p, size_t s)
{
    if (s >= p->repeat_from && s < p->repeat_to)
        s = p->repeat_from + (s - p->repeat_from) % p->period;
    else if (s >= p->repeat_to)
        s -= cg_plan_unstored(p);
    return p->slot_node[s];
}

/* Find the layers of a planned graph and the schedules that run them (layers.c).
 * Leaves the plan as it was (no layers) where the graph is not made of layers whose
 * reordering keeps every sum's order.  0, or -1 out of memory. */
int cg_plan_layers(cg_plan *p);
void cg_plan_free_layers(cg_plan *p);

/* Run one layer (layers.c).  Forward: CG_OK, or CG_ERR_OVERFLOW with nothing written
 * if a sum is not finite (the caller then runs the dots one by one).  Backward: adds
 * the layer's contributions; CG_ERR_OVERFLOW (with every gradient as it was) if some
 * result is not finite. */
cg_status cg_layer_forward(cg_plan *p, const cg_layer *l);
cg_status cg_layer_backward(cg_plan *p, cg_layer *l);
/* Computes the input gradients deferring layers skipped (see cg_layer): one layer's, or
 * every pending layer's (plan_run.c).  cg_plan_keep_weights copies the weights pending
 * layers need before the plan's parameters change. */
void cg_layer_input_grads(cg_plan *p, cg_layer *l);
void cg_plan_input_grads(cg_plan *p);
void cg_plan_keep_weights(cg_plan *p);
/* Finds the loss rows of a plan with layers and puts them in its schedules in place of
 * their steps (fused_loss.c; after cg_plan_drop_layer_steps).  0, or -1 out of memory
 * (the plan as it was).  A row runs forward or backward in one go: 0, or -1 with
 * nothing written when some step of it would meet a number not finite (the caller then
 * runs its steps one by one). */
int cg_plan_fuse_losses(cg_plan *p);
int cg_loss_row_forward(cg_plan *p, const cg_loss_row *r);
int cg_loss_row_backward(cg_plan *p, const cg_loss_row *r);

/* Splitting a plan's work over its threads (plan_parts.c).  How many parts work of
 * this many multiply-adds (or their equivalent) is cut into: at most the plan's
 * threads, none smaller than the work per part (cg_set_work_per_part).  Part `part` of
 * n of `count` items starts at cg_part_start(count, unit, part, n), at a multiple of
 * `unit`; part n - 1 ends at count. */
size_t cg_plan_parts(const cg_plan *p, size_t work);
size_t cg_part_start(size_t count, size_t unit, size_t part, size_t n);

/* Marks the layers whose inputs are all gradless (they skip those gradients) and lists
 * the gradless slots other steps may write (p->written).  0, or -1 out of memory. */
int cg_layers_mark_gradless(cg_plan *p, const uint8_t *gradless);

/* Used by recording and tiling both (replay.c): sort slots by their nodes' addresses;
 * mark the runs of dots summed side by side; list the slots backward zeroes (after
 * cg_plan_layers).  The int ones: 0, or -1 out of memory. */
int cg_plan_sort_by_node(cg_plan *p, uint32_t *slots, size_t count);
void cg_plan_mark_batches(cg_plan *p);
int cg_plan_find_interior_runs(cg_plan *p);
/* Drop the steps the layers run (after cg_plan_find_interior_runs; the loss's step
 * stays last of the first n_backward): a layer that meets a number not finite runs its
 * dots one by one from its tables.  0, or -1 out of memory (the plan as it was). */
int cg_plan_drop_layer_steps(cg_plan *p);

#endif
