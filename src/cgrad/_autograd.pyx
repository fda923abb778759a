# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Gradients as Values (cgrad.autograd): the chain rule recorded as graph nodes, so that
a gradient can be differentiated again.

The order is the one backward() sweeps (the C search, through _core so that its visit
marks share one epoch counter); each node's contributions to its kids are built with
cgrad's own ops in exactly the C backward's arithmetic, so first derivatives equal
backward()'s bit for bit, and summed per kid in the order backward() adds them.
"""
from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memset
from libc.math cimport isinf

from cgrad._capi cimport *
from cgrad._core cimport (Value, leaf, unary, binary, owner_of, has_python_backward,
                          interior_order, free_order, sync_nodes)


cdef class GradientSums:
    """The gradients being summed while a gradient graph is recorded, found through the
    nodes' marks (reset by forget_index): an interior node's mark holds its place in
    the search's order + 1, a leaf's n + its place among the leaves met + 1 (a mark is
    trusted only when the list it points into holds that very node)."""
    cdef cg_node **order
    cdef Py_ssize_t n
    cdef list interior
    cdef cg_node **leaves       # the leaves met, in the order met
    cdef Py_ssize_t n_leaves, leaves_cap
    cdef list leaf_sums

    def __cinit__(self):
        self.leaf_sums = []

    def __dealloc__(self):
        free(self.leaves)

    cdef int index(self, cg_vec *order) except -1:
        """Number the nodes of order through their marks."""
        cdef Py_ssize_t i
        self.order = <cg_node **>order.items
        self.n = <Py_ssize_t>order.len
        self.interior = [None] * self.n
        for i in range(self.n):
            self.order[i].mark = <uint32_t>(i + 1)
        return 0

    cdef void forget_index(self) noexcept:
        cdef Py_ssize_t i
        for i in range(self.n):
            self.order[i].mark = 0       # 0 is no traversal's epoch
        for i in range(self.n_leaves):
            self.leaves[i].mark = 0
        self.n = 0

    cdef Py_ssize_t place(self, cg_node *n) noexcept:
        cdef Py_ssize_t i = <Py_ssize_t>n.mark - 1
        if n.n_kids and 0 <= i < self.n and self.order[i] == n:
            return i
        return -1

    cdef Py_ssize_t leaf_place(self, cg_node *n) noexcept:
        cdef Py_ssize_t j = <Py_ssize_t>n.mark - 1 - self.n
        if 0 <= j < self.n_leaves and self.leaves[j] == n:
            return j
        return -1

    cdef int add(self, cg_node *kid, Value contribution) except -1:
        """kid's gradient += contribution, in the order backward() adds them."""
        cdef cg_node **grown
        cdef Py_ssize_t cap
        cdef Py_ssize_t i = self.place(kid)
        if i >= 0:
            total = self.interior[i]
            self.interior[i] = contribution if total is None else \
                binary(CG_ADD, <Value>total, contribution)
            return 0
        i = self.leaf_place(kid)
        if i >= 0:
            self.leaf_sums[i] = binary(CG_ADD, <Value>self.leaf_sums[i], contribution)
            return 0
        if self.n_leaves == self.leaves_cap:
            cap = 2 * self.leaves_cap + 16
            grown = <cg_node **>realloc(self.leaves, cap * sizeof(cg_node *))
            if grown == NULL:
                raise MemoryError()
            self.leaves = grown
            self.leaves_cap = cap
        self.leaves[self.n_leaves] = kid
        self.n_leaves += 1
        kid.mark = <uint32_t>(self.n + self.n_leaves)
        self.leaf_sums.append(contribution)
        return 0

    cdef Value get(self, cg_node *n):
        cdef Py_ssize_t i = self.place(n)
        if i >= 0:
            return self.interior[i]
        i = self.leaf_place(n)
        return self.leaf_sums[i] if i >= 0 else None


cdef Value negated(Value v):
    return binary(CG_MUL, v, leaf(-1.0))        # -v, as Value.__neg__ makes it


cdef int record_chain_rule(Value node, Value g, GradientSums sums) except -1:
    """Add node's contributions to its kids' gradients, each d(node)/d(kid) * g built
    from cgrad's ops with exactly the arithmetic of the C backward (op_math.h): from the op
    table's derivative recipe (ops.def) where it has one, else by the cases below."""
    cdef cg_node *n = &node.node
    cdef cg_node **k = cg_kids(n)
    cdef uint8_t op = cg_base_op(n)
    cdef uint32_t i
    cdef cg_dot_parts d
    cdef Value a, b, neg
    cdef double e
    if has_python_backward(n):
        raise TypeError(f"cannot record the derivative of a node with a Python _backward "
                        f"(op {node._op!r}): its chain rule is Python code, not cgrad ops")
    recipes = DERIVATIVES[op]
    if recipes:                  # one per kid: d(node)/d(kid), times g
        a = owner_of(k[0])
        b = owner_of(k[1]) if n.n_kids == 2 else None
        for i in range(n.n_kids):
            local = as_node(recipes[i](a, b, node, n.kids.ext.arg))
            sums.add(k[i], binary(CG_MUL, local, g))
    elif op == CG_ADD or op == CG_SUM:
        for i in range(n.n_kids):
            sums.add(k[i], g)
    elif op == CG_MUL:
        a, b = owner_of(k[0]), owner_of(k[1])
        sums.add(k[0], binary(CG_MUL, b, g))
        sums.add(k[1], binary(CG_MUL, a, g))
    elif op == CG_DOT:
        d = cg_dot_of(n)
        for i in range(d.m):
            sums.add(d.w[i], binary(CG_MUL, <Value>owner_of(d.x[i]), g))
            sums.add(d.x[i], binary(CG_MUL, <Value>owner_of(d.w[i]), g))
        if d.bias != NULL:
            sums.add(d.bias, g)
    elif op == CG_LOGSUMEXP:
        neg = negated(node)
        for i in range(n.n_kids):
            if k[i].data == n.data and isinf(n.data):
                sums.add(k[i], g)   # an infinite max: its partial is 1 (C backward's)
                continue
            if isinf(k[i].data - n.data):   # exp(-inf): a partial of exactly 0
                sums.add(k[i], binary(CG_MUL, leaf(0.0), g))
                continue
            a = binary(CG_ADD, <Value>owner_of(k[i]), neg)
            sums.add(k[i], binary(CG_MUL, unary(CG_EXP, a), g))
    elif op == CG_POW:
        e = n.kids.ext.arg
        a = owner_of(k[0])
        b = binary(CG_MUL, unary(CG_POW, a, e - 1.0), leaf(e))   # e * a**(e - 1)
        sums.add(k[0], binary(CG_MUL, b, g))
    elif op == CG_POWV:
        a, b = owner_of(k[0]), owner_of(k[1])
        exponent_less_one = binary(CG_ADD, b, leaf(-1.0))
        sums.add(k[0], binary(CG_MUL, binary(CG_MUL, b, binary(CG_POWV, a, exponent_less_one)), g))
        if a.node.data != 0.0:   # d/db = out * log(a); 0 at a == 0, as PyTorch
            sums.add(k[1], binary(CG_MUL, binary(CG_MUL, node, unary(CG_LOG, a)), g))
    elif op == CG_LOCAL:   # local_grad * g, each local gradient a constant
        for i in range(n.n_kids):
            sums.add(k[i], binary(CG_MUL, leaf(cg_local_grads(n)[i]), g))
    elif not (CG_OP_INFO[op].flags & (CG_OPF_NO_MATH | CG_OPF_UNARY_MATH)):
        raise NotImplementedError(f"no derivative rule for op "
                                  f"{CG_OP_INFO[op].key.decode()!r}")
    return 0


cdef Value as_node(object v):
    """A recipe's result as a node (a recipe that is a number gives a constant)."""
    return v if isinstance(v, Value) else leaf(float(v))


def _unary_op(int op):
    def apply(v):
        return unary(op, v if isinstance(v, Value) else leaf(float(v)))
    return apply


# What a derivative recipe may call (ops.def's header), over Values: every op with its
# math in the table, by key.
RECIPE_OPS = {"__builtins__": {}}
for _code in range(<int>CG_N_OPS):
    if CG_OP_INFO[_code].flags & CG_OPF_UNARY_MATH:
        RECIPE_OPS[CG_OP_INFO[_code].key.decode()] = _unary_op(_code)


def recipe_function(text, key):
    """A derivative recipe as a function of (a, b, out, arg), over RECIPE_OPS."""
    code = compile(f"lambda a, b, out, arg: {text}", f"<derivative of {key}>", "eval")
    return eval(code, RECIPE_OPS)


cdef list compile_derivatives():
    """Per op code: the recipe of each kid's derivative as a function, or () (none, or
    the rule is written by hand)."""
    cdef int i
    cdef list out = []
    for i in range(<int>CG_N_OPS):
        text = CG_OP_INFO[i].derivative.decode()
        if not text or not (CG_OP_INFO[i].flags & CG_OPF_UNARY_MATH or
                            CG_OP_INFO[i].min_kids == CG_OP_INFO[i].max_kids == 2):
            out.append(())
            continue
        out.append(tuple(recipe_function(part.strip(), CG_OP_INFO[i].key.decode())
                         for part in text.split(";")))
    return out


cdef list DERIVATIVES = compile_derivatives()


def _gradients(list outputs, list seeds, list inputs):
    """The gradients of sum(seed * output) with respect to each input, as Values (None
    where an input does not matter), recorded as graph nodes: cgrad.autograd.grad.
    With inputs None: [(node, gradient)] for every node reached."""
    cdef Py_ssize_t i, n_roots = len(outputs)
    cdef cg_vec order
    cdef size_t n_first
    cdef GradientSums sums = GradientSums()
    cdef cg_node **roots = <cg_node **>malloc(max(n_roots, 1) * sizeof(cg_node *))
    if roots == NULL:
        raise MemoryError()
    memset(&order, 0, sizeof(order))
    sync_nodes()
    result = []
    try:
        for i in range(n_roots):
            roots[i] = &(<Value>outputs[i]).node
        if interior_order(roots, n_roots, &order, &n_first) < 0:
            raise MemoryError("out of memory while walking the graph")
        nodes = []      # held while new nodes are built: the order's nodes stay alive
        for i in range(<Py_ssize_t>order.len):
            nodes.append(owner_of(<cg_node *>order.items[i]))
        sums.index(&order)
        for i in range(n_roots):
            sums.add(roots[i], <Value>seeds[i])
        for i in range(len(nodes) - 1, -1, -1):
            g = sums.get(&(<Value>nodes[i]).node)
            if g is not None:
                record_chain_rule(<Value>nodes[i], <Value>g, sums)
        if inputs is None:        # every node reached: [(node, its gradient)]
            for i in range(len(nodes)):
                if sums.interior[i] is not None:
                    result.append((nodes[i], sums.interior[i]))
            for i in range(sums.n_leaves):
                result.append((owner_of(sums.leaves[i]), sums.leaf_sums[i]))
        else:
            for v in inputs:
                result.append(sums.get(&(<Value>v).node))
    finally:
        sums.forget_index()
        free(roots)
        free_order(&order)
    return result


