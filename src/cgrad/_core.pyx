# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The C-backed Value: a micrograd node whose graph lives in C structs.

Each Value embeds a ``cg_node``.  A node points at its kids' nodes, and keeps their
Value objects alive by holding one reference to each (the Value is recovered from the
node by a fixed offset).  Kids are always older than their parents, so a graph cannot
hold a cycle: the type is left out of Python's cyclic GC, which would cost ~10x per op
on a large kept graph.  Freeing is iterative (see ``release_kids``) so that a chain of
millions of nodes does not recurse.
"""
cimport cython
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsDouble
from cpython.ref cimport PyObject, Py_INCREF
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.math cimport isfinite

import numbers

cdef extern from "ops.h":
    double cg_reciprocal(double d) nogil

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject *o)
    void decref "Py_DECREF"(PyObject *o)


# ---- node <-> Value -------------------------------------------------------------------

cdef Py_ssize_t NODE_OFFSET   # where a Value's cg_node sits inside the object


cdef inline PyObject *owner(cg_node *n) noexcept nogil:
    return <PyObject *>(<char *>n - NODE_OFFSET)


cdef object owner_of(cg_node *n):
    return <object>owner(n)


# Dropping a Value drops its kids.  Releasing them from inside the dealloc would recurse
# once per level of the graph, so a kid whose last reference is going away is parked on
# this stack instead, and the outermost release drains it: recursion depth stays 1.
cdef cg_vec dying
cdef bint draining = False


cdef void release_kids(cg_node *n) noexcept:
    global draining
    cdef cg_node **kids = cg_kids(n)
    cdef uint32_t i
    cdef PyObject *kid
    for i in range(n.n_kids):
        kid = owner(kids[i])
        if Py_REFCNT(kid) > 1 or cg_vec_push(&dying, kid) < 0:
            decref(kid)
    if n.n_kids > 2:
        free(n.kids.many)
    n.n_kids = 0
    if draining:
        return
    draining = True
    while dying.len:
        dying.len -= 1
        decref(<PyObject *>dying.items[dying.len])
    draining = False


cdef cg_node **kid_slots(cg_node *n, Py_ssize_t count) except NULL:
    """Room for n's count kid pointers: inline for up to two, else a malloc'd array that
    n owns.  The caller fills them and then sets n.n_kids."""
    if count > 0xFFFFFFFF:
        raise ValueError("a node can have at most 2**32 - 1 children")
    if count <= 2:
        return n.kids.pair
    cdef cg_node **slots = <cg_node **>malloc(count * sizeof(cg_node *))
    if slots == NULL:
        raise MemoryError()
    n.kids.many = slots
    return slots


cdef int check_kids(tuple kids) except -1:
    for kid in kids:
        if type(kid) is not Value:
            raise TypeError(f"a node's children must be Values, got {type(kid).__name__}")
    return 0


cdef void forget(cg_node *n) noexcept:
    """Let go of what n holds: its kids and, for a hand-built node, its op's name."""
    if n.op == CG_OPAQUE:
        drop_name(<Py_ssize_t>n.arg)
        n.op = CG_LEAF
    if n.n_kids:
        release_kids(n)


cdef int set_kids(cg_node *n, tuple kids) except -1:
    """Point n (which has no kids) at the nodes of the Values in kids, holding a
    reference to each.  A tuple: what was checked is what is used, whatever the
    caller's sequence would do if iterated again."""
    cdef Py_ssize_t count = len(kids), i
    check_kids(kids)
    cdef cg_node **slots = kid_slots(n, count)
    for i in range(count):
        kid = kids[i]
        slots[i] = &(<Value>kid).node
        Py_INCREF(kid)
    n.n_kids = <uint32_t>count
    return 0


cdef int interior_order(cg_node **roots, size_t n_roots, cg_vec *order,
                        size_t *n_first) noexcept nogil:
    """cg_interior_order for other modules: graph.c is linked into this one only, so
    every traversal draws its visit marks from the same epoch counter."""
    return cg_interior_order(roots, n_roots, order, n_first)


# ---- replayed graphs and their nodes -------------------------------------------------------

cdef bint pending = False            # some Graph holds numbers its nodes do not show yet
cdef object flush_replays = None     # set by _replay: writes those numbers into the nodes


cdef int sync_nodes() except -1:
    global pending
    if pending:
        pending = False
        flush_replays()
    return 0


cdef void nodes_changed() noexcept:
    global cg_data_epoch
    cg_data_epoch += 1   # also what rows' copies of their data are checked against


cdef void replay_pending() noexcept:
    global pending
    pending = True


cdef unsigned long node_epoch() noexcept:
    return cg_data_epoch


def _set_flush(callback):
    """Called once by cgrad._replay with its flush function."""
    global flush_replays
    flush_replays = callback


# ---- numbers ----------------------------------------------------------------------------

cdef int as_double(object o, double *out) except -1:
    """Store o as a double and return 1 if o is a real number; return 0 if it is not.

    Raises OverflowError for an int too large for a float, as float() does."""
    if type(o) is float:
        out[0] = PyFloat_AS_DOUBLE(o)
        return 1
    if type(o) is int:
        out[0] = PyLong_AsDouble(o)
        return 1
    if isinstance(o, (float, int)) or isinstance(o, numbers.Real) or is_numpy_bool(o):
        out[0] = float(o)
        if not isfinite(out[0]) and o == o and o != INF and o != -INF:
            raise OverflowError(f"{o!r:.60} is too large to be a float")
        return 1
    return 0


cdef double INF = float("inf")


cdef bint is_numpy_bool(object o):
    """numpy's bool scalar, a real number that numbers.Real does not list (Python's own
    bool is an int)."""
    t = type(o)
    return t.__module__ == "numpy" and t.__name__ in ("bool", "bool_")


cdef double to_double(object o, str what) except? -1.0:
    cdef double d
    if not as_double(o, &d):
        raise TypeError(f"{what} must be a real number (int, float or numpy scalar), "
                        f"not {type(o).__name__}: {o!r:.60}")
    return d


cdef Value leaf(double data):
    cdef Value v = Value.__new__(Value)
    v.node.data = data
    return v


cdef inline Value as_value(object o):
    """o itself if it is a Value, a new leaf if it is a number, None otherwise."""
    cdef double d
    if type(o) is Value:
        return <Value>o
    if as_double(o, &d):
        return leaf(d)
    return None


# ---- errors -----------------------------------------------------------------------------

# The _op strings of user-built nodes, indexed by node.arg, each kept while a node uses
# it: a program that names a million nodes differently does not keep a million names.
cdef list OPAQUE_NAMES = []       # index -> name, or None for a free index
cdef list OPAQUE_USES = []        # index -> how many live nodes use the name
cdef list OPAQUE_FREE = []        # free indices
cdef dict OPAQUE_INDEX = {}       # name -> index


cdef Py_ssize_t hold_name(str name) except -1:
    cdef Py_ssize_t i
    index = OPAQUE_INDEX.get(name)
    if index is not None:
        i = index
    elif OPAQUE_FREE:
        i = OPAQUE_FREE.pop()
        OPAQUE_NAMES[i] = name
        OPAQUE_USES[i] = 0
        OPAQUE_INDEX[name] = i
    else:
        i = len(OPAQUE_NAMES)
        OPAQUE_NAMES.append(name)
        OPAQUE_USES.append(0)
        OPAQUE_INDEX[name] = i
    OPAQUE_USES[i] += 1
    return i


cdef void drop_name(Py_ssize_t i) noexcept:
    OPAQUE_USES[i] -= 1
    if OPAQUE_USES[i] == 0:
        del OPAQUE_INDEX[OPAQUE_NAMES[i]]
        OPAQUE_NAMES[i] = None
        try:
            OPAQUE_FREE.append(i)
        except MemoryError:
            pass  # the index is not reused: a few bytes lost, nothing wrong


cdef str op_name(cg_node *n):
    cdef uint8_t op = n.op
    if op == CG_POW:
        if n.flags & CG_FLAG_INT_EXPONENT:
            return f"**{int(n.arg)}"
        return f"**{n.arg!r}"
    if op == CG_OPAQUE:
        return OPAQUE_NAMES[<Py_ssize_t>n.arg]
    return ("", "+", "*", "", "**", "ReLU", "tanh", "exp", "log", "sigmoid", "sum",
            "dot", "logsumexp", "", "row")[op]


cdef str describe(cg_node *n):
    cdef cg_node **k = cg_kids(n)
    cdef uint8_t op = n.op
    if op == CG_ADD or op == CG_MUL or op == CG_POWV:
        return f"{k[0].data!r} {op_name(n)} {k[1].data!r}"
    if op == CG_POW:
        return f"{k[0].data!r} ** {n.arg!r}"
    if op == CG_SUM:
        return f"a sum of {n.n_kids} values"
    if op == CG_DOT:
        return f"a dot product of {cg_dot_of(n).m} pairs"
    if op == CG_LOGSUMEXP:
        return f"logsumexp of {n.n_kids} values"
    return f"{op_name(n)}({k[0].data!r})"


cdef int raise_status(cg_status status, cg_node *failed, bint in_backward) except -1:
    where = "backward() of " if in_backward else ""
    if status == CG_ERR_NOMEM:
        raise MemoryError("out of memory while walking the graph")
    what = describe(failed)
    if status == CG_ERR_ZERODIV:
        raise ZeroDivisionError(
            f"{where}{what}: 0.0 cannot be raised to a negative power")
    if status == CG_ERR_DOMAIN:
        if failed.op == CG_LOG:
            raise ValueError(f"math domain error: {what} is undefined for inputs <= 0")
        if failed.op == CG_POWV:
            raise ValueError(
                f"{what}: Value ** Value needs a base >= 0 (its gradient with respect "
                f"to the exponent is log(base)); raise to a constant exponent instead")
        raise ValueError(
            f"{what}: a negative number cannot be raised to a fractional power "
            f"(the result would be complex)")
    if in_backward:
        raise OverflowError(
            f"backward() of {what}: a gradient overflowed to inf or nan "
            f"(gradient flowing in: {failed.grad!r})")
    raise OverflowError(f"{what} overflows a float (the result would be inf or nan)")


# ---- building nodes ---------------------------------------------------------------------

cdef Value unary(uint8_t op, Value a, double arg=0.0, uint8_t flags=0):
    sync_nodes()
    cdef Value out = Value.__new__(Value)
    out.node.op = op
    out.node.arg = arg
    out.node.flags = flags
    out.node.n_kids = 1
    out.node.kids.pair[0] = &a.node
    cdef cg_status status = cg_eval_inline(&out.node)
    if status != CG_OK:
        out.node.n_kids = 0
        raise_status(status, &out.node, False)
    Py_INCREF(a)
    return out


cdef Value binary(uint8_t op, Value a, Value b):
    sync_nodes()
    cdef Value out = Value.__new__(Value)
    out.node.op = op
    out.node.n_kids = 2
    out.node.kids.pair[0] = &a.node
    out.node.kids.pair[1] = &b.node
    cdef cg_status status = cg_eval_inline(&out.node)
    if status != CG_OK:
        out.node.n_kids = 0
        raise_status(status, &out.node, False)
    Py_INCREF(a)
    Py_INCREF(b)
    return out


cdef Value nary(uint8_t op, list kids, uint8_t flags):
    sync_nodes()
    cdef Value out = Value.__new__(Value)
    out.node.op = op
    out.node.flags = flags
    set_kids(&out.node, tuple(kids))
    cdef cg_status status = cg_eval_inline(&out.node)
    if status != CG_OK:
        raise_status(status, &out.node, False)
    return out


cdef Value power(Value base, object exponent):
    """base ** exponent for a number exponent; None if exponent is not a number."""
    cdef double k
    if type(exponent) is int or isinstance(exponent, numbers.Integral):
        return unary(CG_POW, base, float(exponent), CG_FLAG_INT_EXPONENT)
    if as_double(exponent, &k):
        return unary(CG_POW, base, k, 0)
    return None


cdef object reciprocal(object number):
    """number ** -1 as Python computes it (micrograd divides by multiplying by it)."""
    cdef double d, inverse
    if not as_double(number, &d):
        return None
    if d == 0.0:
        raise ZeroDivisionError(f"division by zero: cannot divide a Value by {number!r}")
    inverse = cg_reciprocal(d)
    if isfinite(d) and not isfinite(inverse):
        raise OverflowError(f"cannot divide a Value by {number!r}: its reciprocal "
                            f"overflows a float")
    return inverse


# ---- the Value --------------------------------------------------------------------------

# The free list keeps up to 131,072 dropped Values (10 MB) for reuse: a training loop
# that rebuilds its graph each step then allocates no fresh memory, whose page faults
# cost as much as building the nodes (measured: 48 -> 22 ns per op over 50k pairs).
@cython.final
@cython.no_gc
@cython.freelist(131072)
cdef class Value:
    """A scalar in a computation graph: its data, its gradient and how it was made.

    micrograd's API: ``Value(data, _children=(), _op='', label='')``, the operators
    ``+ - * / **``, ``relu()``, ``backward()``.  Beyond micrograd: ``tanh()``, ``exp()``,
    ``log()``, ``sigmoid()``, ``Value ** Value`` and ``number ** Value``.
    """

    __array_ufunc__ = None  # numpy scalars hand `np.float64(2) * v` to Value.__rmul__

    def __init__(self, data, _children=(), _op='', label=''):
        # Everything that can fail or run the caller's code comes first; the node
        # changes only once its new state is known good.
        cdef double d = to_double(data, "Value() data")
        cdef tuple kids = tuple(_children)
        check_kids(kids)
        name = str(_op) if kids or _op else None
        sync_nodes()
        nodes_changed()
        cdef cg_node old = self.node   # its kids are released last, after the swap
        cdef Py_ssize_t name_index = hold_name(name) if name is not None else -1
        memset(&self.node, 0, sizeof(cg_node))
        self.node.data = d
        try:
            set_kids(&self.node, kids)
        except BaseException:
            if name_index >= 0:
                drop_name(name_index)
            raise
        finally:
            forget(&old)
        if name_index >= 0:
            # a node built by hand, as micrograd's internals do: kept as is, no math
            self.node.op = CG_OPAQUE
            self.node.arg = name_index
        self._label = label

    def __dealloc__(self):
        forget(&self.node)

    # -- attributes --

    @property
    def data(self):
        sync_nodes()
        return self.node.data

    @data.setter
    def data(self, value):
        cdef double d = to_double(value, "Value.data")
        sync_nodes()
        self.node.data = d
        nodes_changed()

    @property
    def grad(self):
        sync_nodes()
        return self.node.grad

    @grad.setter
    def grad(self, value):
        cdef double d = to_double(value, "Value.grad")
        sync_nodes()
        self.node.grad = d
        nodes_changed()

    @property
    def label(self):
        return '' if self._label is None else self._label

    @label.setter
    def label(self, value):
        self._label = value

    @property
    def _op(self):
        return op_name(&self.node)

    @property
    def _prev(self):
        """The set of the Values this one was computed from."""
        cdef cg_node **kids = cg_kids(&self.node)
        cdef uint32_t i
        cdef cg_dot_parts d
        prev = set()
        if self.node.op == CG_DOT and self.node.flags & CG_FLAG_ROWS:  # through the rows
            d = cg_dot_of(&self.node)
            for i in range(d.m):
                prev.add(owner_of(d.w[i]))
                prev.add(owner_of(d.x[i]))
            if d.bias != NULL:
                prev.add(owner_of(d.bias))
            return prev
        for i in range(self.node.n_kids):
            prev.add(owner_of(kids[i]))
        return prev

    def __repr__(self):
        sync_nodes()
        return f"Value(data={self.node.data!r}, grad={self.node.grad!r})"

    # -- arithmetic, decomposed exactly as micrograd does --

    def __add__(self, other):
        cdef Value b = as_value(other)
        if b is None:
            return NotImplemented
        return binary(CG_ADD, self, b)

    def __radd__(self, other):
        return self.__add__(other)

    def __mul__(self, other):
        cdef Value b = as_value(other)
        if b is None:
            return NotImplemented
        return binary(CG_MUL, self, b)

    def __rmul__(self, other):
        return self.__mul__(other)

    def __neg__(self):
        return binary(CG_MUL, self, leaf(-1.0))

    def __sub__(self, other):
        if type(other) is Value:
            return binary(CG_ADD, self, -other)
        cdef Value b = as_value(other)
        if b is None:
            return NotImplemented
        b.node.data = -b.node.data
        return binary(CG_ADD, self, b)

    def __rsub__(self, other):
        cdef Value a = as_value(other)
        if a is None:
            return NotImplemented
        return binary(CG_ADD, -self, a)

    def __truediv__(self, other):
        if type(other) is Value:
            return binary(CG_MUL, self, power(<Value>other, -1))
        inverse = reciprocal(other)
        if inverse is None:
            return NotImplemented
        return binary(CG_MUL, self, leaf(inverse))

    def __rtruediv__(self, other):
        cdef Value a = as_value(other)
        if a is None:
            return NotImplemented
        return binary(CG_MUL, power(self, -1), a)

    def __pow__(self, other, modulo=None):
        if modulo is not None:
            return NotImplemented
        if type(other) is Value:
            return binary(CG_POWV, self, <Value>other)
        out = power(self, other)
        return NotImplemented if out is None else out

    def __rpow__(self, other, modulo=None):
        cdef Value base = as_value(other)
        if base is None or modulo is not None:
            return NotImplemented
        return binary(CG_POWV, base, self)

    # -- functions --

    def relu(self):
        return unary(CG_RELU, self)

    def tanh(self):
        return unary(CG_TANH, self)

    def exp(self):
        return unary(CG_EXP, self)

    def log(self):
        return unary(CG_LOG, self)

    def sigmoid(self):
        return unary(CG_SIGMOID, self)

    # -- gradients --

    def backward(self):
        """Set the gradient of every node this one depends on (leaf grads accumulate)."""
        cdef cg_vec order
        cdef cg_node *failed = NULL
        memset(&order, 0, sizeof(order))
        sync_nodes()
        cdef cg_status status = cg_backward(&self.node, &order, &failed)
        nodes_changed()
        cg_vec_free(&order)
        if status != CG_OK:
            raise_status(status, failed, True)

    def _backward(self):
        """Apply this node's local chain rule once: add to its children's grads."""
        sync_nodes()
        cdef cg_status status = cg_backward_inline(&self.node)
        nodes_changed()
        if status != CG_OK:
            raise_status(status, &self.node, True)

    # -- copying --

    def __reduce__(self):
        sync_nodes()
        cdef cg_node **k = cg_kids(&self.node)
        cdef uint32_t i
        cdef list kid_list = []
        for i in range(self.node.n_kids):
            kid_list.append(owner_of(k[i]))
        kids = tuple(kid_list)
        return (_restore, (self.node.data, self.node.grad, self._label, self.node.op,
                           self.node.arg, self.node.flags, kids, self._op))


cdef bint kids_fit(int op, tuple kids, int flags):
    """Whether a node of this op can have these kids (the C code relies on it)."""
    cdef Py_ssize_t n = len(kids)
    if op == CG_DOT and flags & CG_FLAG_ROWS:  # a row of weights (and bias), one of inputs
        return (n == 2 and type(kids[0]) is Value and type(kids[1]) is Value
                and (<Value>kids[0]).node.op == CG_ROW and (<Value>kids[1]).node.op == CG_ROW
                and (<Value>kids[0]).node.n_kids == (<Value>kids[1]).node.n_kids
                + ((flags & CG_FLAG_HAS_BIAS) != 0))
    if op == CG_ROW:
        return True
    if op == CG_LEAF:
        return n == 0
    if op == CG_ADD or op == CG_MUL or op == CG_POWV:
        return n == 2
    if op == CG_SUM or op == CG_LOGSUMEXP:
        return True
    if op == CG_DOT:  # weights, as many inputs, then the bias if flagged
        n -= (flags & CG_FLAG_HAS_BIAS) != 0
        return n >= 0 and n % 2 == 0
    return n == 1  # the unary ops


def _restore(data, grad, label, op, arg, flags, kids, op_text):
    """Rebuild a pickled Value (data is stored, not recomputed)."""
    cdef Value v
    kids = tuple(kids)
    if op == CG_OPAQUE:
        v = Value(data, kids, op_text, label)
    elif op == CG_ROW:
        v = row_node(kids)
        v._label = label
    else:
        if type(op) is not int or not (0 <= op < CG_N_OPS) or type(flags) is not int:
            raise ValueError(f"corrupt pickled Value: unknown op code {op!r}")
        if not kids_fit(op, kids, flags):
            raise ValueError(f"corrupt pickled Value: op code {op!r} cannot have "
                             f"{len(kids)} children")
        v = Value(data, (), '', label)
        set_kids(&v.node, kids)
        v.node.op = op
        v.node.arg = arg
        v.node.flags = flags
    v.node.grad = grad
    return v


# ---- fused n-ary nodes ------------------------------------------------------------------

cdef list values_of(values, str what):
    """The items of values as Values (numbers become leaves)."""
    cdef list out = []
    for v in values:
        k = as_value(v)
        if k is None:
            raise TypeError(f"{what} needs Values or numbers, got {type(v).__name__}")
        out.append(k)
    return out


def vsum(values):
    """Sum of Values and numbers as one node, in exactly the order of Python's sum()."""
    kids = values_of(values, "sum()")
    if not kids:
        return leaf(0.0)
    return nary(CG_SUM, kids, 0)


def logsumexp(values):
    """log(sum(exp(v) for v in values)) as one node, without overflow (the max is
    subtracted before exp).  Its gradient is the softmax of the values."""
    kids = values_of(values, "logsumexp()")
    if not kids:
        raise ValueError("logsumexp() of no values is -inf: give it at least one")
    return nary(CG_LOGSUMEXP, kids, 0)


cdef bint all_values(list items):
    for item in items:
        if type(item) is not Value:
            return False
    return True


cdef Value dot_node(list ws, list xs, Value bias):
    """The dot node of ws and xs, equally long lists of Values, and bias (or None).

    The kids are written straight from the two lists: a neuron's weights are usually
    already a list of Values, so no joined list is built per call."""
    cdef Py_ssize_t m = len(ws), count = 2 * len(ws) + (bias is not None), i
    sync_nodes()
    cdef Value out = Value.__new__(Value)
    cdef cg_node **slots = kid_slots(&out.node, count)
    for i in range(m):
        w = ws[i]
        x = xs[i]
        Py_INCREF(w)
        Py_INCREF(x)
        slots[i] = &(<Value>w).node
        slots[m + i] = &(<Value>x).node
    if bias is not None:
        Py_INCREF(bias)
        slots[2 * m] = &bias.node
    out.node.n_kids = <uint32_t>count
    out.node.op = CG_DOT
    out.node.flags = CG_FLAG_HAS_BIAS if bias is not None else 0
    cdef cg_status status = cg_eval_inline(&out.node)
    if status != CG_OK:
        raise_status(status, &out.node, False)
    return out


cdef Value dot_of(ws, list xs, object bias):
    """The dot node of ws (Values or numbers) and xs (a list of Values)."""
    # The bias first: converting it may run the caller's code (__float__), which must
    # not change the weights between their check and their use.
    cdef Value b = None
    if bias is not None:
        b = as_value(bias)
        if b is None:
            raise TypeError(f"dot() bias must be a Value or a number, "
                            f"not {type(bias).__name__}")
    cdef list weights = ws if type(ws) is list and all_values(ws) else \
        values_of(ws, "dot() weights")
    if len(weights) != len(xs):
        raise ValueError(f"dot() needs as many weights as inputs: got {len(weights)} "
                         f"weights and {len(xs)} inputs")
    return dot_node(weights, xs, b)


def dot(ws, xs, bias=None):
    """sum(w*x for w, x in zip(ws, xs)) + bias as one node: the neuron's pre-activation.

    Summed as micrograd's ``sum((wi*xi for wi, xi in zip(w, x)), b)``, so the value is
    bit for bit the same."""
    return dot_of(ws, values_of(xs, "dot() inputs"), bias)


cdef dict ACTIVATION_OPS = {'relu': CG_RELU, 'tanh': CG_TANH, 'sigmoid': CG_SIGMOID}


class ParameterList(list):
    """A neuron's weights: a list that remembers the row node built over it (and the
    bias) until it is changed, so that every dot node of a layer reads one shared row."""
    __slots__ = ("row", "row_bias")

    def __init__(self, *args):
        list.__init__(self, *args)
        self.row = self.row_bias = None

    def __reduce__(self):
        return (ParameterList, (list(self),))

    def _changed(self):
        self.row = self.row_bias = None


def _invalidating(name):
    method = getattr(list, name)

    def changed(self, *args):
        self.row = self.row_bias = None
        return method(self, *args)
    changed.__name__ = name
    return changed


for _name in ("__setitem__", "__delitem__", "__iadd__", "__imul__", "append", "extend",
              "insert", "pop", "remove", "clear", "sort", "reverse"):
    setattr(ParameterList, _name, _invalidating(_name))


cdef Value row_node(items):
    """A row node over Values: one node many dot nodes share as a kid.  Beyond two items
    its kid array has room for a copy of their data (cg_row_values)."""
    cdef tuple kids = tuple(items)
    cdef Py_ssize_t count = len(kids), i
    check_kids(kids)
    if count > 0xFFFFFFFF:
        raise ValueError("a row can have at most 2**32 - 1 values")
    cdef Value row = Value.__new__(Value)
    row.node.op = CG_ROW
    if count <= 2:
        set_kids(&row.node, kids)
        return row
    cdef cg_node **slots = <cg_node **>malloc(cg_row_alloc_size(count))
    if slots == NULL:
        raise MemoryError()
    row.node.kids.many = slots
    for i in range(count):
        kid = kids[i]
        slots[i] = &(<Value>kid).node
        Py_INCREF(kid)
    row.node.n_kids = <uint32_t>count
    return row


cdef Value weight_row(object neuron, object weights, Value bias, Py_ssize_t n_inputs):
    """The row of a neuron's weights and bias: remembered on its ParameterList, else
    built for this call."""
    if type(weights) is ParameterList and weights.row_bias is bias \
            and weights.row is not None:
        return weights.row
    cdef list items = values_of(weights, "a neuron's weights")
    if len(items) != n_inputs:
        raise ValueError(f"this neuron takes {len(items)} inputs, got {n_inputs}")
    items.append(bias)
    cdef Value row = row_node(items)
    if type(weights) is ParameterList:
        weights.row = row
        weights.row_bias = bias
    return row


cdef Value row_dot(Value weights, Value inputs):
    """The dot node of a weight row (ending with the bias) and an input row."""
    sync_nodes()
    cdef Value out = Value.__new__(Value)
    out.node.op = CG_DOT
    out.node.flags = CG_FLAG_ROWS | CG_FLAG_HAS_BIAS
    out.node.n_kids = 2
    out.node.kids.pair[0] = &weights.node
    out.node.kids.pair[1] = &inputs.node
    Py_INCREF(weights)
    Py_INCREF(inputs)
    cdef cg_status status = cg_eval_inline(&out.node)
    if status != CG_OK:
        raise_status(status, &out.node, False)
    return out


def fused_layer(neurons, x):
    """``[n(x) for n in neurons]`` for nn.Neurons, with no Python call per fused neuron:
    each is one dot node over the neuron's weight row and one input row shared by the
    layer, and its activation.  Any other neuron is simply called."""
    cdef Value inputs = None
    cdef list out = []
    cdef Value pre, bias
    for n in neurons:
        activation = n.activation
        if not n.fused or (activation != 'linear' and activation not in ACTIVATION_OPS):
            out.append(n(x))
            continue
        if inputs is None:
            inputs = row_node(values_of(x, "a layer's inputs"))
        bias = as_value(n.b)
        if bias is None:
            raise TypeError(f"a neuron's bias must be a Value, not {type(n.b).__name__}")
        pre = row_dot(weight_row(n, n.w, bias, inputs.node.n_kids), inputs)
        out.append(pre if activation == 'linear' else unary(ACTIVATION_OPS[activation], pre))
    return out


cdef Py_ssize_t node_offset():
    cdef Value probe = Value.__new__(Value)
    return <char *>&probe.node - <char *><PyObject *>probe


NODE_OFFSET = node_offset()
memset(&dying, 0, sizeof(dying))
