# The C API (csrc/) as Cython sees it: the node, the op table, traversal, replay's plan,
# the optimizers' loops.  _core.pxd declares _core's own API on top of it.
from cpython.ref cimport PyObject
from libc.stdint cimport uint8_t, uint32_t


include "_op_codes.pxi"   # the op names, from csrc/ops.def


cdef extern from "cgrad.h" nogil:
    enum:
        CG_OPF_CANNOT_FAIL
        CG_OPF_NO_MATH
        CG_OPF_GIVEN_DATA
        CG_OPF_HAS_ARG
        CG_OPF_UNARY_MATH

    ctypedef struct cg_op_info:
        const char *key
        const char *symbol
        int min_kids
        int max_kids
        unsigned flags
        const char *py_forward
        const char *derivative

    const cg_op_info CG_OP_INFO[]

    ctypedef enum cg_status:
        CG_OK, CG_ERR_OVERFLOW, CG_ERR_ZERODIV, CG_ERR_DOMAIN, CG_ERR_NOMEM, CG_ERR_PYTHON

    enum:
        CG_FLAG_INT_EXPONENT
        CG_FLAG_HAS_BIAS
        CG_FLAG_ROWS
        CG_FLAG_TRACKED
        CG_FLAG_KID_ARRAY
        CG_FLAG_CONSTANT
        CG_FLAG_FLATTENED
        CG_OP_PYTHON_BACKWARD

    cdef struct cg_node

    ctypedef struct cg_kid_array:
        cg_node **many
        double arg

    ctypedef union cg_kid_slots:
        cg_node *pair[2]
        cg_kid_array ext

    cdef struct cg_node:
        double data
        double grad
        cg_kid_slots kids
        uint32_t n_kids
        uint32_t mark
        uint8_t op
        uint8_t flags

    ctypedef struct cg_dot_parts:
        cg_node **w
        cg_node **x
        cg_node *bias
        uint32_t m

    cg_dot_parts cg_dot_of(cg_node *n)

    ctypedef struct cg_vec:
        void **items
        size_t len
        size_t cap

    cg_node **cg_kids(cg_node *n)
    int cg_kids_inline(const cg_node *n)
    double *cg_local_grads(cg_node *n)
    int cg_is_interior(const cg_node *n)
    uint8_t cg_base_op(const cg_node *n)
    uint32_t cg_data_epoch
    size_t cg_row_alloc_size(size_t n_items)
    int cg_vec_push(cg_vec *v, void *item)
    void cg_vec_free(cg_vec *v)
    int cg_interior_order(cg_node **roots, size_t n_roots, cg_vec *order, size_t *n_first)
    cg_status cg_backward(cg_node *root, cg_vec *order, cg_node **failed)
    cg_status cg_gradients(cg_node **roots, const double *seeds, size_t n_roots,
                           cg_node **inputs, size_t n_inputs, double *grads,
                           cg_node **failed, double *failed_grad)
    void cg_gather(cg_node **nodes, size_t n, double *out)
    ctypedef struct cg_plan
    cg_plan *cg_plan_new(cg_node **nodes, size_t n, size_t n_backward, cg_node **queries,
                         size_t n_queries, uint32_t *query_slots, int find_layers)
    void cg_plan_free(cg_plan *p)
    size_t cg_plan_slots(const cg_plan *p, cg_node ***nodes)
    size_t cg_plan_layer_count(const cg_plan *p)
    size_t cg_plan_deferring_layers(const cg_plan *p)
    size_t cg_plan_pending_input_layers(const cg_plan *p)
    size_t cg_plan_loss_row_count(const cg_plan *p)
    int cg_plans_share_nodes(const cg_plan *a, const cg_plan *b)
    int cg_plan_set_threads(cg_plan *p, size_t threads)
    void cg_plan_set_exact(cg_plan *p, int exact)
    enum: CG_MAX_THREADS
    cg_status cg_plan_forward(cg_plan *p, cg_node **failed)
    cg_status cg_plan_backward(cg_plan *p, cg_node **failed)
    void cg_plan_reload(cg_plan *p, int interior)
    void cg_plan_sync(cg_plan *p)
    int cg_plan_sync_node(cg_plan *p, cg_node *n)
    int cg_plan_mark_params(cg_plan *p, const uint32_t *slots, size_t n)
    void cg_plan_sync_except_params(cg_plan *p)
    int cg_plan_sync_node_except_params(cg_plan *p, cg_node *n)
    void cg_plan_reload_except_params(cg_plan *p, int interior)
    void cg_plan_reload_params(cg_plan *p, const uint32_t *slots, size_t n)
    int cg_plans_share_nodes_beyond_params(const cg_plan *a, const cg_plan *b)
    void cg_plan_take_params(cg_plan *to, const uint32_t *to_slots, const cg_plan *frm,
                             const uint32_t *from_slots, size_t n, int zero_grads)
    void cg_plan_find_slots(cg_plan *p, cg_node **nodes, size_t n, uint32_t *slots)
    void cg_plan_arrays(cg_plan *p, double **val, double **grad)
    int cg_plan_add_leaves(cg_plan *p, cg_node **nodes, size_t n, uint32_t *slots)
    size_t cg_slot_runs(const uint32_t *slots, size_t n, uint32_t *runs)
    void cg_plan_load(cg_plan *p, const uint32_t *slots, const uint32_t *runs, size_t n_runs,
                      const double *data)
    double cg_plan_root_value(const cg_plan *p)
    int cg_plan_skip_grads(cg_plan *p, const uint32_t *slots, size_t n)
    int cg_plan_defer_input_grads(cg_plan *p, const uint32_t *slots, size_t n)
    ctypedef struct cg_tiling
    cg_tiling *cg_tiling_new(const cg_plan *p2, const uint32_t *inputs, const size_t *widths,
                             size_t n_groups, const uint32_t *outputs, size_t n_outputs,
                             const char **why)
    void cg_tiling_free(cg_tiling *t)
    size_t cg_tiling_slots(const cg_tiling *t, size_t batch)
    cg_plan *cg_tiling_plan(const cg_tiling *t, size_t batch, uint32_t *input_slots,
                            uint32_t *output_slots, int find_layers)
    int cg_plans_match(const cg_plan *a, const uint32_t *a_inputs, const cg_plan *b,
                       const uint32_t *b_inputs, size_t n_inputs, const uint32_t *a_outputs,
                       const uint32_t *b_outputs, size_t n_outputs)


cdef extern from "cgrad.h":
    # called by the sweep, which holds the GIL whenever a node has Python code
    cg_status (*cg_python_backward)(cg_node *n) except CG_ERR_PYTHON


cdef extern from "node_ops.h" nogil:
    cg_status cg_eval_inline(cg_node *n)
    cg_status cg_eval_row_dots(cg_node **dots, size_t n, size_t *failed)
    int cg_has_repeats(void **items, size_t n)
    cg_status cg_backward_inline(cg_node *n)


cdef extern from "cgrad.h" nogil:
    long cg_sgd_step(cg_node **params, size_t n, double lr, double momentum,
                     double weight_decay, const double *state, double *next,
                     double *new_data)
    long cg_adam_step(cg_node **params, size_t n, double lr, double beta1, double beta2,
                      double eps, double weight_decay, long step, const double *state,
                      double *next, double *new_data)
    enum:
        CG_UPDATE_SGD
        CG_UPDATE_ADAM
    ctypedef struct cg_update:
        int kind
        double lr, h1, h2, h3, h4
        long step
        const double *state
        double *next
        double *new_data
        size_t n
        const uint32_t *slots
    long cg_plan_update(cg_plan *p, const cg_update *u)
    void cg_zero_grads(cg_node **params, size_t n)
