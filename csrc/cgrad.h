/* cgrad: the graph node and the C API.  Plain C99, no Python. */
#ifndef CGRAD_H
#define CGRAD_H

#include <stddef.h>
#include <stdint.h>

#include "op_table.h"
#include "containers.h"

/* Set in a node's op byte when Python code (a `_backward` the user assigned, the way
 * micrograd's own ops are written) replaces the op's chain rule.  The sweep's inline
 * `+`/`*` test then fails for such a node, and cg_backward_other hands it to
 * cg_python_backward; forward math and names use cg_base_op. */
#define CG_OP_PYTHON_BACKWARD 0x80

enum {
    CG_FLAG_INT_EXPONENT = 1, /* CG_POW: the exponent was given as an integer */
    CG_FLAG_HAS_BIAS = 2,     /* CG_DOT: the last kid is the bias */
    /* CG_DOT over two shared rows: kids are a row of weights (and the bias, last, with
     * CG_FLAG_HAS_BIAS) and a row of inputs, so a layer's dots hold no copies of them */
    CG_FLAG_ROWS = 4,
    /* the node's Value is tracked by Python's cyclic GC (it holds, or is built over a
     * node that holds, Python objects that may lead back to it); nodes built over it are
     * tracked too */
    CG_FLAG_TRACKED = 8,
    /* the kids are in kids.ext.many even if there are only two (CG_LOCAL: the array has
     * room for the local gradients after the kid pointers) */
    CG_FLAG_KID_ARRAY = 16,
    /* a leaf made from a number by an op (the 2.0 of `x * 2.0`): its gradient is never
     * read, so a contribution to it that overflows is not an error */
    CG_FLAG_CONSTANT = 32,
    /* saved as one node of a flattened graph (Value.__reduce__): its next __reduce__ is
     * the plain one */
    CG_FLAG_FLATTENED = 64
};

typedef struct cg_node cg_node;

/* A node's kids: up to two inline, or a malloc'd array the node owns.  The word after a
 * lone kid or after the array pointer holds the op's constant, `arg`: CG_POW's exponent
 * (one kid), a CG_LOCAL's local gradient (one kid), a row's data-copy epoch (more than
 * two kids).  No op with exactly two kids
 * has a constant, so a node is 48 bytes. */
typedef struct {
    cg_node **many;
    double arg;
} cg_kid_array;

typedef union {
    cg_node *pair[2];
    cg_kid_array ext;
} cg_kid_slots;

struct cg_node {
    double data;
    double grad;
    cg_kid_slots kids;
    uint32_t n_kids;
    uint32_t mark;       /* visit mark: equal to the current epoch once visited */
    uint8_t op;          /* a cg_op, maybe with CG_OP_PYTHON_BACKWARD */
    uint8_t flags;
};

static inline int cg_kids_inline(const cg_node *n)
{
    return n->n_kids <= 2 && !(n->flags & CG_FLAG_KID_ARRAY);
}

static inline cg_node **cg_kids(cg_node *n)
{
    return cg_kids_inline(n) ? n->kids.pair : n->kids.ext.many;
}

/* A CG_LOCAL node's local gradients, one per kid: a lone kid's in `arg`, more after
 * the kid pointers in the node's array. */
static inline double *cg_local_grads(cg_node *n)
{
    return n->n_kids == 1 ? &n->kids.ext.arg : (double *)(void *)(n->kids.ext.many + n->n_kids);
}

/* Whether backward() visits the node: it has kids, or Python code as its chain rule. */
static inline int cg_is_interior(const cg_node *n)
{
    return n->n_kids != 0 || (n->op & CG_OP_PYTHON_BACKWARD);
}

static inline uint8_t cg_base_op(const cg_node *n)
{
    return (uint8_t)(n->op & ~CG_OP_PYTHON_BACKWARD);
}

/* Runs a node's Python `_backward` (set by the Python layer, which owns the objects). */
extern cg_status (*cg_python_backward)(cg_node *n);

/* Bumped whenever some node's data may have changed after it was computed (an optimizer
 * step, a write through Value.data, a replayed graph's numbers reaching its nodes):
 * copies of node data taken at an earlier epoch are stale.  Lives in graph.c. */
extern uint32_t cg_data_epoch;

/* A row node with more than two items keeps, after its kid pointers, a copy of their
 * data: the layer's dot nodes read it instead of chasing the pointers once per neuron.
 * The copy is refreshed when the epoch moved (kids.ext.arg holds the epoch + 1 it was
 * taken at).  Rows of one or two items have no room for it (kids stored inline). */
static inline size_t cg_row_alloc_size(size_t n_items)
{
    return n_items * (sizeof(cg_node *) + sizeof(double));
}

/* The parts of a dot node, flat or over rows: m weights, m inputs and the bias (or NULL). */
typedef struct {
    cg_node **w, **x, *bias;
    uint32_t m;
} cg_dot_parts;

static inline cg_dot_parts cg_dot_of(cg_node *n)
{
    cg_node **k = cg_kids(n);
    int has_bias = (n->flags & CG_FLAG_HAS_BIAS) != 0;
    cg_dot_parts d;
    if (n->flags & CG_FLAG_ROWS) {
        d.w = cg_kids(k[0]);
        d.x = cg_kids(k[1]);
        d.m = k[1]->n_kids;
        d.bias = has_bias ? d.w[d.m] : NULL;
    } else {
        d.m = (n->n_kids - (uint32_t)has_bias) / 2;
        d.w = k;
        d.x = k + d.m;
        d.bias = has_bias ? k[2 * d.m] : NULL;
    }
    return d;
}

/* Every interior (non-leaf) node reachable from any of the roots, kids before parents,
 * each once.  The first *n_first are those roots[0] depends on, in the order backward()
 * from roots[0] sweeps them.  0 or -1 (out of memory). */
int cg_interior_order(cg_node **roots, size_t n_roots, cg_vec *order, size_t *n_first);

/* Compute n dot nodes over rows (CG_FLAG_ROWS) that read one input row: a layer's
 * neurons for one example.  Four sums advance side by side, each in its own order (the
 * bits of one at a time; one dot alone is bound by the latency of its adds).  CG_OK, or
 * the status of the first that fails, and its index in *failed. */
cg_status cg_eval_row_dots(cg_node **dots, size_t n, size_t *failed);



/* Zero the grads of interior nodes in order, set root's grad to 1 and apply the
 * chain rule from root down.  On error *failed is the node that failed. */
cg_status cg_backward(cg_node *root, cg_vec *order, cg_node **failed);

/* The gradients of sum(seeds[i] * roots[i]) with respect to inputs, into grads (0 for
 * an input the roots do not depend on): backward()'s chain rule over every node the
 * roots depend on, each node's gradient summed from its first contribution; every node's
 * grad is as before on return.  On error *failed is the node that failed and *failed_grad
 * the gradient that had flowed into it. */
cg_status cg_gradients(cg_node **roots, const double *seeds, size_t n_roots,
                       cg_node **inputs, size_t n_inputs, double *grads,
                       cg_node **failed, double *failed_grad);

/* Replay (replay.c builds a plan, plan_run.c runs it, plan_nodes.c hands its numbers
 * to and from the nodes): a recorded graph packed for re-running.  nodes[0..n) are interior
 * nodes, kids first, as cg_interior_order gives them; the first n_backward are the ones
 * the root nodes[n_backward - 1] depends on.  query_slots[i] receives the slot of
 * queries[i] (UINT32_MAX if the plan does not touch it): found while planning, when it
 * costs a read per query instead of cg_plan_find_slots' passes over every node.  NULL
 * when out of memory.  Without find_layers, only its steps (to compare, not to run). */
typedef struct cg_plan cg_plan;
cg_plan *cg_plan_new(cg_node **nodes, size_t n, size_t n_backward, cg_node **queries,
                     size_t n_queries, uint32_t *query_slots, int find_layers);
void cg_plan_free(cg_plan *p);
/* How many slots the plan has, and (a recorded plan's) the node of each in *nodes. */
size_t cg_plan_slots(const cg_plan *p, cg_node ***nodes);
/* How many layers the plan runs over whole batches (matrix-matrix). */
size_t cg_plan_layer_count(const cg_plan *p);
/* How many of them compute their input gradients on demand (cg_plan_defer_input_grads). */
size_t cg_plan_deferring_layers(const cg_plan *p);
/* How many of them the last backward left their input gradients to (tests). */
size_t cg_plan_pending_input_layers(const cg_plan *p);
/* How many softmax cross-entropy rows of the loss run as one step each (fused_loss.c). */
size_t cg_plan_loss_row_count(const cg_plan *p);
/* Split each layer's kernels into `threads` parts run side by side (1..CG_MAX_THREADS):
 * the same bits whatever the number.  0, or -1 (out of range, out of memory). */
enum { CG_MAX_THREADS = 64 };
int cg_plan_set_threads(cg_plan *p, size_t threads);
/* exact (the default): the layer kernels keep eager's bits; 0: they fuse each
 * multiply-add (FMA) where the CPU has it, which changes the last bits. */
void cg_plan_set_exact(cg_plan *p, int exact);
/* Whether two plans touch a node in common (then a run of one must see the other's
 * numbers in the nodes first). */
int cg_plans_share_nodes(const cg_plan *a, const cg_plan *b);
/* The plan keeps its own copy of every number it touches (val, grad per slot); nodes
 * and plan meet only through reload and sync, which the Python layer calls when one side
 * may have changed (lazily: a training loop of replayed steps touches no node). */
/* nodes -> plan: the leaves' data and grads, and with `interior` the other nodes' data
 * (a run that starts with forward recomputes them). */
void cg_plan_reload(cg_plan *p, int interior);
void cg_plan_sync(cg_plan *p);       /* plan -> nodes: data, leaves' and loss graph's grads */
/* cg_plan_sync for one node (its input gradient computed first if it is pending): 1,
 * or 0 if the plan does not touch the node.  A binary search in the plan's slots
 * sorted by node address: a read of one node costs microseconds, not a whole sync. */
int cg_plan_sync_node(cg_plan *p, cg_node *n);
/* Hand-overs between two plans bound to one optimizer, its parameters' slots marked in
 * each (cg_plan_mark_params: 0, or -1 out of memory).  A plan takes the parameters'
 * data and grads from the other, plan to plan (cg_plan_take_params; slots: each plan's
 * slot of parameter i; with zero_grads their grads are set to 0 instead, as a training
 * step's zero_grad() would: half the memory to read); the other keeps the rest of its
 * numbers, and hands them to the nodes, or a node's alone, without the parameters (the
 * _except_params variants); a plan whose parameters went back to the nodes meanwhile
 * reads them there (cg_plan_reload_params).  cg_plans_share_nodes_beyond_params:
 * whether a shares a node with b other than a's parameters. */
int cg_plan_mark_params(cg_plan *p, const uint32_t *slots, size_t n);
void cg_plan_sync_except_params(cg_plan *p);
int cg_plan_sync_node_except_params(cg_plan *p, cg_node *n);
void cg_plan_reload_except_params(cg_plan *p, int interior);
void cg_plan_reload_params(cg_plan *p, const uint32_t *slots, size_t n);
void cg_plan_take_params(cg_plan *to, const uint32_t *to_slots, const cg_plan *from,
                         const uint32_t *from_slots, size_t n, int zero_grads);
int cg_plans_share_nodes_beyond_params(const cg_plan *a, const cg_plan *b);
/* The slots of nodes (UINT32_MAX for a node the plan does not touch). */
void cg_plan_find_slots(cg_plan *p, cg_node **nodes, size_t n, uint32_t *slots);
void cg_plan_arrays(cg_plan *p, double **val, double **grad);
/* Make leaves the plan does not touch (slots[i] == UINT32_MAX, as cg_plan_find_slots
 * gives them) leaves of it, which no step reads: an optimizer in the plan then updates
 * them too (with gradient 0, as it would on the nodes).  Their slots are written to
 * slots; their numbers are read from the nodes.  0, or -1 out of memory (the plan as
 * it was). */
int cg_plan_add_leaves(cg_plan *p, cg_node **nodes, size_t n, uint32_t *slots);
/* The runs of consecutive slots in slots[0..n), UINT32_MAX slots left out: (first
 * index, count) pairs into runs (room for 2 n).  Their number. */
size_t cg_slot_runs(const uint32_t *slots, size_t n, uint32_t *runs);
/* Fill slots with data as fresh leaves (grad 0: after cg_plan_skip_grads over these
 * slots their grads are 0 already), run by run: data[i] into slot slots[i] for the i
 * of the n_runs runs (cg_slot_runs of these slots, found once per graph). */
void cg_plan_load(cg_plan *p, const uint32_t *slots, const uint32_t *runs, size_t n_runs,
                  const double *data);
double cg_plan_root_value(const cg_plan *p);  /* the loss, after forward */

/* Tiling (tile.c): the plan over any batch size copied from one recorded over two
 * examples.  cg_tiling_new reads p2 (it must outlive the tiling): inputs are its input
 * leaves' slots, group by group (each group's first example's widths[g], then the
 * second's); NULL with *why saying what is not a per-example graph summed by one sum
 * (or "out of memory").  cg_tiling_plan makes the plan for batch >= 2 examples, its
 * input slots (group by group, example by example) in input_slots; NULL out of memory.
 * cg_plans_match: whether plan a runs the very steps plan b runs (inputs by position,
 * the same nodes, constants of equal value). */
typedef struct cg_tiling cg_tiling;
cg_tiling *cg_tiling_new(const cg_plan *p2, const uint32_t *inputs, const size_t *widths,
                         size_t n_groups, const uint32_t *outputs, size_t n_outputs,
                         const char **why);
void cg_tiling_free(cg_tiling *t);
cg_plan *cg_tiling_plan(const cg_tiling *t, size_t batch, uint32_t *input_slots,
                        uint32_t *output_slots, int find_layers);
size_t cg_tiling_slots(const cg_tiling *t, size_t batch);   /* its plan's, batch >= 2 */
int cg_plans_match(const cg_plan *a, const uint32_t *a_inputs, const cg_plan *b,
                   const uint32_t *b_inputs, size_t n_inputs, const uint32_t *a_outputs,
                   const uint32_t *b_outputs, size_t n_outputs);
/* Leave these slots' grads at 0 instead of computing them (layers reading only such
 * slots skip their input-gradient pass).  0, or -1 out of memory. */
int cg_plan_skip_grads(cg_plan *p, const uint32_t *slots, size_t n);
/* Input gradients on demand: a layer over input rows that only it reads skips their
 * gradients in backward, and they are computed (the same bits) when the plan's numbers
 * next reach its nodes (cg_plan_sync) or before another backward adds to them; a new
 * batch (cg_plan_load) drops them unread; an update in the plan (cg_plan_update) keeps
 * the weights they need first.  0, or -1 out of memory. */
int cg_plan_defer_input_grads(cg_plan *p, const uint32_t *slots, size_t n);
/* Recompute every node from its leaves; on error *failed is the node. */
cg_status cg_plan_forward(cg_plan *p, cg_node **failed);
/* root.backward() over the plan: interior grads restart at zero, leaf grads accumulate. */
cg_status cg_plan_backward(cg_plan *p, cg_node **failed);

/* Read nodes' data into out. */
void cg_gather(cg_node **nodes, size_t n, double *out);

/* Optimizer updates over an array of parameter nodes, as PyTorch defines them.
 * SGD: g = grad + weight_decay * data; v = momentum * v + g; data -= lr * v
 * (with momentum 0 and no decay this is micrograd's `p.data -= lr * p.grad`).
 * Both return -1, or, writing nothing, the index of a finite parameter that the update
 * would make inf or NaN.  `state` holds the update's state (SGD: the velocity, n
 * doubles; Adam: the moments m then v, 2n); the update writes the new state into
 * `next` (as many doubles) and the new values into `new_data` (n): once it went
 * through, `next` is the state (the caller swaps the two; nothing is copied back). */
long cg_sgd_step(cg_node **params, size_t n, double lr, double momentum,
                 double weight_decay, const double *state, double *next, double *new_data);

/* Adam; step counts from 1. */
long cg_adam_step(cg_node **params, size_t n, double lr, double beta1, double beta2,
                  double eps, double weight_decay, long step, const double *state,
                  double *next, double *new_data);

/* The same updates over parameters kept in a plan's arrays, at val[slots[i]], with the
 * hyperparameters in order (SGD: momentum, weight decay; Adam: the betas, eps, weight
 * decay) and the state as above.  In two passes over a range [i0, i1) of the
 * parameters: check writes the new state and values and returns -1 or the first
 * parameter it would break; write writes the values.  Ranges may run at once in
 * threads; write only once every check of the update returned -1.  Each number is
 * computed as one pass over all the parameters computes it. */
enum { CG_UPDATE_SGD = 1, CG_UPDATE_ADAM = 2 };
typedef struct {
    int kind;
    double lr, h1, h2, h3, h4;
    long step;              /* Adam's, from 1 */
    const double *state;
    double *next, *new_data;
    size_t n;
    const uint32_t *slots;
} cg_update;
long cg_update_check(const cg_update *u, double *val, const double *grad, size_t i0,
                     size_t i1);
void cg_update_write(const cg_update *u, double *val, const double *grad, size_t i0,
                     size_t i1);
/* Both passes over all of u's parameters, split over the plan's threads when it pays
 * (plan_parts.c): -1, or (nothing written) the first parameter the update would break. */
long cg_plan_update(cg_plan *p, const cg_update *u);

void cg_zero_grads(cg_node **params, size_t n);

#endif
