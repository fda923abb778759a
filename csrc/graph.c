/* Whole-graph work from a root: topological order and backward(); and the graph state
 * the eager ops read (the data epoch, the Python-backward hook). */
#include <stdlib.h>
#include "cgrad.h"
#include "node_ops.h"

uint32_t cg_data_epoch = 0;

static cg_status no_python(cg_node *n)
{
    (void)n;
    return CG_OK;
}

cg_status (*cg_python_backward)(cg_node *n) = no_python;

/* Each traversal takes a fresh epoch, so marks never need clearing.  New nodes carry
 * mark 0, which no epoch uses.  (A node left unvisited for 2**32 traversals could be
 * mistaken for visited; that is ~100 years of backward() calls at one per microsecond.) */
static uint32_t current_epoch = 0;

static uint32_t next_epoch(void)
{
    if (++current_epoch == 0)
        current_epoch = 1;
    return current_epoch;
}

typedef struct {
    cg_node *node;
    cg_node **next_kid;  /* the kid to look at next */
    cg_node **end;       /* one past the last kid */
} dfs_frame;

static dfs_frame frame_of(cg_node *n)
{
    cg_node **kids = cg_kids(n);
    return (dfs_frame){n, kids, kids + n->n_kids};
}

/* The search waits on memory: the address of each node it steps to is read from the
 * last one.  Nodes are built kids first, so when a kid sits just below its parent (a
 * sum's or a chain's previous link), the nodes the search steps to next (older links,
 * their terms) usually sit just below that kid, and those lines are fetched ahead.  A
 * kid further away (a tree's other half, a layer's input) gets no prefetch: what lies
 * below it is not next, and fetching it slowed wide trees by 10-20%. */
#define NEAR_BELOW 512        /* bytes */
#define PREFETCH_PAIRS 4      /* 128-byte pairs of lines below the kid: 512 bytes */

static inline void prefetch_below(const cg_node *parent, const cg_node *kid)
{
    if ((uintptr_t)parent - (uintptr_t)kid > NEAR_BELOW)  /* also: kid above parent */
        return;
    /* one prefetch a pair: the other line comes along (one a line measured the same) */
    for (int pair = 1; pair <= PREFETCH_PAIRS; pair++)
        __builtin_prefetch((const char *)kid - 128 * pair);
}

/* The search's stack is kept between calls (a deep graph's stack is megabytes, and
 * fresh pages cost a fault each), unless it grew past this many frames. */
#define KEEP_FRAMES ((size_t)1 << 20)
static dfs_frame *spare_stack = NULL;   /* NULL while a search uses it */
static size_t spare_cap = 0;

static void put_back_stack(dfs_frame *stack, size_t cap)
{
    if (cap > KEEP_FRAMES || spare_stack) {
        free(stack);
        return;
    }
    spare_stack = stack;
    spare_cap = cap;
}

/* Iterative depth-first post-order from root, skipping nodes already marked with
 * epoch: the same order micrograd's recursive build_topo gives when kids are visited in
 * their stored order.  Leaves are left out (they have nothing to compute or pass on, so
 * they need neither a mark nor a slot), unless Python code was given as their chain
 * rule (micrograd runs a childless node's `_backward` too).  With zero_grads, each node's grad is zeroed as
 * it is emitted, which is what backward() needs before its sweep. */
static int depth_first(cg_node *root, uint32_t epoch, cg_vec *order, int zero_grads)
{
    size_t cap = 64, len = order->len;
    if (!cg_is_interior(root) || root->mark == epoch)
        return 0;
    dfs_frame *stack;
    if (spare_stack) {                   /* not in use by an enclosing search */
        stack = spare_stack;
        cap = spare_cap;
        spare_stack = NULL;
    } else if (!(stack = malloc(cap * sizeof *stack))) {
        return -1;
    }

    dfs_frame *top = stack;
    root->mark = epoch;
    *top = frame_of(root);
    for (;;) {
        /* the next kid of top that is neither a leaf nor visited, if any */
        cg_node **next = top->next_kid, *kid = NULL;
        while (next != top->end) {
            cg_node *k = *next++;
            if (cg_is_interior(k) && k->mark != epoch) {
                kid = k;
                break;
            }
        }
        top->next_kid = next;
        if (kid) {
            kid->mark = epoch;
            prefetch_below(top->node, kid);
            if (++top == stack + cap) {
                dfs_frame *grown = realloc(stack, 2 * cap * sizeof *stack);
                if (!grown)
                    goto nomem;
                top = grown + cap;
                stack = grown;
                cap *= 2;
            }
            *top = frame_of(kid);
            continue;
        }
        if (zero_grads && top->node->n_kids)  /* a childless node's grad accumulates */
            top->node->grad = 0.0;
        /* cg_vec_push with the length in a local: the loop is hot enough to show it */
        if (len == order->cap) {
            order->len = len;
            if (cg_vec_grow(order) < 0)
                goto nomem;
        }
        order->items[len++] = top->node;
        if (top == stack)
            break;
        top--;
    }
    order->len = len;
    put_back_stack(stack, cap);
    return 0;
nomem:
    order->len = len;
    put_back_stack(stack, cap);
    return -1;
}

int cg_interior_order(cg_node **roots, size_t n_roots, cg_vec *order, size_t *n_first)
{
    uint32_t epoch = next_epoch();
    *n_first = 0;
    for (size_t i = 0; i < n_roots; i++) {
        if (depth_first(roots[i], epoch, order, 0) < 0)
            return -1;
        if (i == 0)
            *n_first = order->len;
    }
    return 0;
}

/* The chain rule over nodes[0..n) in reverse: kids come before parents in nodes. */
static cg_status sweep(cg_node **nodes, size_t n, cg_node **failed)
{
    for (size_t i = n; i-- > 0;) {
        cg_status st = cg_backward_inline(nodes[i]);
        if (st != CG_OK) {
            *failed = nodes[i];
            return st;
        }
    }
    return CG_OK;
}

cg_status cg_backward(cg_node *root, cg_vec *order, cg_node **failed)
{
    order->len = 0;
    if (!cg_is_interior(root)) {
        root->grad = 1.0;
        return CG_OK;
    }
    if (depth_first(root, next_epoch(), order, 1) < 0)
        return CG_ERR_NOMEM;
    root->grad = 1.0;
    return sweep((cg_node **)order->items, order->len, failed);
}

/* Every leaf among the kids of order's nodes, and every root that is a leaf, marked with
 * epoch and pushed to leaves once. */
static int gather_leaves(cg_node **roots, size_t n_roots, const cg_vec *order,
                         uint32_t epoch, cg_vec *leaves)
{
    for (size_t i = 0; i < n_roots; i++)
        if (!cg_is_interior(roots[i]) && roots[i]->mark != epoch) {
            roots[i]->mark = epoch;
            if (cg_vec_push(leaves, roots[i]) < 0)
                return -1;
        }
    for (size_t i = 0; i < order->len; i++) {
        cg_node *n = order->items[i], **k = cg_kids(n);
        for (uint32_t j = 0; j < n->n_kids; j++)
            if (!cg_is_interior(k[j]) && k[j]->mark != epoch) {
                k[j]->mark = epoch;
                if (cg_vec_push(leaves, k[j]) < 0)
                    return -1;
            }
    }
    return 0;
}

cg_status cg_gradients(cg_node **roots, const double *seeds, size_t n_roots,
                       cg_node **inputs, size_t n_inputs, double *grads,
                       cg_node **failed, double *failed_grad)
{
    cg_vec order = {0}, leaves = {0};
    size_t n_first;
    cg_status st = CG_ERR_NOMEM;
    double *saved = NULL;
    if (cg_interior_order(roots, n_roots, &order, &n_first) < 0)
        goto done;
    uint32_t epoch = current_epoch;     /* the one the order's nodes are marked with */
    if (gather_leaves(roots, n_roots, &order, epoch, &leaves) < 0)
        goto done;
    size_t n = order.len + leaves.len;
    if (!(saved = malloc((n ? n : 1) * sizeof *saved)))
        goto done;
    /* -0.0 + x is x for every x (0.0 + -0.0 is not): each sum starts from its first
     * contribution, as a recorded gradient's sum does */
    for (size_t i = 0; i < order.len; i++) {
        cg_node *node = order.items[i];
        saved[i] = node->grad;
        node->grad = -0.0;
    }
    for (size_t i = 0; i < leaves.len; i++) {
        cg_node *node = leaves.items[i];
        saved[order.len + i] = node->grad;
        node->grad = -0.0;
    }
    for (size_t i = 0; i < n_inputs; i++)  /* before a Python _backward can search */
        grads[i] = inputs[i]->mark == epoch;
    for (size_t i = 0; i < n_roots; i++)
        roots[i]->grad += seeds[i];
    st = sweep((cg_node **)order.items, order.len, failed);
    if (st != CG_OK)
        *failed_grad = (*failed)->grad;   /* for the message, before it is restored */
    for (size_t i = 0; i < n_inputs; i++)
        grads[i] = grads[i] != 0.0 ? inputs[i]->grad : 0.0;
    for (size_t i = 0; i < order.len; i++)
        ((cg_node *)order.items[i])->grad = saved[i];
    for (size_t i = 0; i < leaves.len; i++)
        ((cg_node *)leaves.items[i])->grad = saved[order.len + i];
done:
    free(saved);
    cg_vec_free(&order);
    cg_vec_free(&leaves);
    return st;
}
