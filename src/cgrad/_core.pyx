# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The C-backed Value: a micrograd node whose graph lives in C structs.

Each Value embeds a ``cg_node``.  A node points at its kids' nodes, and keeps their
Value objects alive by holding one reference to each (the Value is recovered from the
node by a fixed offset).  Freeing is iterative (see ``release_kids``) so that a chain of
millions of nodes does not recurse.

A Value can carry Python attributes (``__dict__``), weak references, a ``_backward``
closure, and the type can be subclassed or given new methods, as micrograd's can.  Kids
are always older than their parents, so only those Python objects can close a cycle:
a Value is tracked by the cyclic GC only once it holds such objects (or is built over
one that does), the way CPython untracks tuples and dicts of atoms.  A plain node stays
untracked; tracking every node would cost ~10x per op on a large kept graph.  Exact
Values live in slabs (``csrc/slab.c``) so that a graph built in a loop is laid out in
creation order whatever was freed before.
"""
cimport cython
from cgrad._capi cimport *
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsDouble
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.object cimport PyTypeObject
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.math cimport isfinite

import numbers

cdef extern from "op_math.h":
    double cg_reciprocal(double d) nogil
    double cg_logsumexp_partial(double v, double out) nogil
    cg_status cg_backward_scalar(uint8_t op, double arg, double a, double b, double out,
                                 double g, double *da, double *db) nogil

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject *o)
    void decref "Py_DECREF"(PyObject *o)
    int PyObject_GC_IsTracked(object o)
    void PyObject_GC_Track(object o)
    PyObject *PyObject_Init(PyObject *o, PyTypeObject *t)
    PyObject *PyErr_NoMemory()
    int PyObject_GenericSetAttr(object o, object name, PyObject *value) except -1
    int PyTraceMalloc_Track(unsigned int domain, size_t ptr, size_t size)
    int PyTraceMalloc_Untrack(unsigned int domain, size_t ptr)
    unsigned long Py_TPFLAGS_IMMUTABLETYPE_OR_0 "CGRAD_IMMUTABLETYPE"
    ctypedef PyObject *(*allocfunc)(PyTypeObject *, Py_ssize_t)
    ctypedef void (*freefunc)(void *)
    ctypedef int (*visitproc)(PyObject *, void *)
    ctypedef int (*traverseproc)(PyObject *, visitproc, void *)
    ctypedef int (*inquiry)(PyObject *)
    ctypedef void (*destructor)(PyObject *)
    ctypedef PyObject *(*getter)(PyObject *, void *)
    ctypedef int (*setter)(PyObject *, PyObject *, void *)
    ctypedef struct PyGetSetDef:
        const char *name
        getter get
        setter set
        const char *doc
        void *closure
    PyObject *PyObject_GenericGetDict(PyObject *o, void *context)
    int PyObject_GenericSetDict(PyObject *o, PyObject *value, void *context)
    PyObject *PyDescr_NewGetSet(PyTypeObject *t, PyGetSetDef *getset) except NULL
    PyObject *PyType_GenericAlloc(PyTypeObject *t, Py_ssize_t n_items)
    void PyObject_GC_Del(void *o)
    void PyObject_GC_UnTrack(void *o)
    void PyObject_ClearWeakRefs(PyObject *o)
    unsigned long Py_TPFLAGS_HAVE_GC
    int PyDict_SetItem(object d, object key, object value) except -1
    void PyType_Modified(PyTypeObject *t)
    void Py_SET_TYPE(PyObject *o, PyTypeObject *t)
    long PY_VERSION_HEX
    ctypedef struct TypeSlots "PyTypeObject":
        destructor tp_dealloc
        PyObject *tp_dict
        Py_ssize_t tp_basicsize
        Py_ssize_t tp_dictoffset
        unsigned long tp_flags
        allocfunc tp_alloc
        freefunc tp_free
        traverseproc tp_traverse
        inquiry tp_clear
        Py_ssize_t tp_weaklistoffset

cdef extern from *:
    """
    #ifdef Py_TPFLAGS_IMMUTABLETYPE
    #define CGRAD_IMMUTABLETYPE Py_TPFLAGS_IMMUTABLETYPE
    #else
    #define CGRAD_IMMUTABLETYPE 0
    #endif
    #ifdef CGRAD_NO_SLABS
    #define CGRAD_USE_SLABS 0
    #else
    #define CGRAD_USE_SLABS 1
    #endif
    """
    bint CGRAD_USE_SLABS

cdef extern from "slab.h":
    ctypedef struct cg_slab_pool:
        size_t chunk
        size_t n_slabs
        void (*on_new)(void *slab, size_t n_bytes) noexcept
        void (*on_release)(void *slab) noexcept
    size_t CG_SLAB_BYTES
    int cg_slab_pool_init(cg_slab_pool *p, size_t chunk, size_t max_empty_slabs)
    void cg_slab_pool_trim(cg_slab_pool *p)
    void cg_zero_block(void *block, size_t n_bytes)
    void *cg_slab_alloc(cg_slab_pool *p)
    void cg_slab_free(cg_slab_pool *p, void *chunk)


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
    if not cg_kids_inline(n):
        free(n.kids.ext.many)
    n.n_kids = 0
    n.flags &= ~CG_FLAG_KID_ARRAY
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
    n.kids.ext.many = slots
    return slots


cdef int check_kids(tuple kids) except -1:
    for kid in kids:
        if not isinstance(kid, Value):
            raise TypeError(f"a node's children must be Values, got {type(kid).__name__}")
    return 0


cdef void forget(cg_node *n) noexcept:
    """Let go of the kids n holds."""
    n.op = CG_LEAF
    if n.n_kids:
        release_kids(n)


cdef int set_kids(cg_node *n, tuple kids) except -1:
    """Point n (which has no kids) at the nodes of the Values in kids, holding a
    reference to each.  A tuple: what was checked is what is used, whatever the
    caller's sequence would do if iterated again."""
    cdef Py_ssize_t count = len(kids), i
    cdef uint8_t flags = 0
    check_kids(kids)
    cdef cg_node **slots = kid_slots(n, count)
    for i in range(count):
        kid = kids[i]
        slots[i] = &(<Value>kid).node
        flags |= (<Value>kid).node.flags
        Py_INCREF(kid)
    n.n_kids = <uint32_t>count
    return flags & CG_FLAG_TRACKED


cdef int set_local_kids(cg_node *n, tuple kids, tuple local_grads) except -1:
    """Make n (no kids yet) microgpt's node: kid i receives local_grads[i] * grad.  A
    lone kid's local gradient sits in `arg`; more go after the kid pointers in an array
    n owns (CG_FLAG_KID_ARRAY, even for two)."""
    cdef Py_ssize_t count = len(kids), i
    cdef uint8_t flags = 0
    cdef cg_node **slots
    cdef double *local
    check_kids(kids)
    if count > 0xFFFFFFFF:
        raise ValueError("a node can have at most 2**32 - 1 children")
    if count == 1:
        slots = n.kids.pair
        local = &n.kids.ext.arg
    else:
        slots = <cg_node **>malloc(count * (sizeof(cg_node *) + sizeof(double)))
        if slots == NULL:
            raise MemoryError()
        local = <double *>(slots + count)
        n.kids.ext.many = slots
        n.flags |= CG_FLAG_KID_ARRAY
    for i in range(count):
        kid = kids[i]
        slots[i] = &(<Value>kid).node
        local[i] = <double>local_grads[i]
        flags |= (<Value>kid).node.flags
        Py_INCREF(kid)
    n.n_kids = <uint32_t>count
    n.op = CG_LOCAL
    return flags & CG_FLAG_TRACKED


cdef tuple as_local_grads(object grads, Py_ssize_t n_kids):
    """microgpt's local_grads as a tuple of floats, one per child, checked."""
    cdef list out = []
    cdef double d
    try:
        items = tuple(grads)
    except TypeError:
        raise TypeError(f"Value()'s third argument is micrograd's _op (a str) or "
                        f"microgpt's local_grads (a sequence of numbers), not "
                        f"{type(grads).__name__}") from None
    if len(items) != n_kids:
        raise ValueError(f"Value() needs one local gradient per child: got "
                         f"{n_kids} children and {len(items)} local gradients")
    for g in items:
        if isinstance(g, Value):
            raise TypeError(f"a local gradient must be a number, not a Value (it is the "
                            f"derivative's value at this point: pass {g!r}.data)")
        if not as_double(g, &d):
            raise TypeError(f"a local gradient must be a real number (int, float or "
                            f"numpy scalar), not {type(g).__name__}: {g!r:.60}")
        out.append(d)
    return tuple(out)


cdef int interior_order(cg_node **roots, size_t n_roots, cg_vec *order,
                        size_t *n_first) noexcept nogil:
    """cg_interior_order for other modules: graph.c is linked into this one only, so
    every traversal draws its visit marks from the same epoch counter."""
    return cg_interior_order(roots, n_roots, order, n_first)


cdef void free_order(cg_vec *order) noexcept nogil:
    cg_vec_free(order)   # graph.c maps large orders: only it knows how to free them


cdef bint has_repeats(cg_node **nodes, size_t n) except -1:
    """cg_has_repeats for other modules (graph.c is linked into this one only)."""
    cdef int repeats = cg_has_repeats(<void **>nodes, n)
    if repeats < 0:
        raise MemoryError()
    return repeats


# ---- replayed graphs and their nodes -------------------------------------------------------

cdef bint pending = False            # some Graph holds numbers its nodes do not show yet
cdef object flush_replays = None     # set by _replay: writes those numbers into the nodes
cdef object flush_one = None         # set by _replay: writes one node's


cdef int sync_nodes() except -1:
    if pending:
        flush_replays()   # clears `pending` (replay_settled) once every plan handed back
    return 0


cdef inline int sync_node(Value v) except -1:
    """Before Python reads v's own numbers (data, grad, repr, a comparison): only v's
    come back from the graph holding them; building on v or writing it syncs all."""
    if pending:
        flush_one(v)
    return 0


cdef void nodes_changed() noexcept:
    global cg_data_epoch
    cg_data_epoch += 1   # also what rows' copies of their data are checked against


cdef void replay_pending() noexcept:
    global pending
    pending = True


cdef void replay_settled() noexcept:
    global pending
    pending = False


cdef unsigned long node_epoch() noexcept:
    return cg_data_epoch


def _set_flush(callback, one_node):
    """Called once by cgrad._replay with its flush functions: of every node, of one."""
    global flush_replays, flush_one
    flush_replays = callback
    flush_one = one_node


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
    """A constant an op is built over (the 2.0 of `x * 2.0`)."""
    cdef Value v = Value.__new__(Value)
    v.node.data = data
    v.node.flags = CG_FLAG_CONSTANT
    return v


cdef inline Value as_value(object o):
    """o itself if it is a Value, a new leaf if it is a number, None otherwise."""
    cdef double d
    if isinstance(o, Value):
        return <Value>o
    if as_double(o, &d):
        return leaf(d)
    return None


# ---- errors -----------------------------------------------------------------------------

cdef object not_an_operand(object other):
    """What an operator returns for an operand that is neither a Value nor a number:
    NotImplemented (Python then tries the other side, or raises its TypeError), except
    for the mistakes whose TypeError would not say what to do."""
    t = type(other)
    if t.__name__ == "ndarray" and t.__module__ == "numpy":
        raise TypeError("a cgrad Value is a scalar and does not combine with a numpy "
                        "array: go element by element ([v * x for x in array.tolist()]) "
                        "or use cgrad.dot(weights, inputs)")
    if hasattr(other, "data") and hasattr(other, "grad") and hasattr(other, "_prev"):
        raise TypeError(f"cannot combine a cgrad Value with a {t.__module__}.{t.__name__}: "
                        f"their graphs are separate engines.  Import Value from "
                        f"cgrad.engine everywhere (or convert: cgrad.Value(v.data))")
    return NotImplemented


cdef str op_name(cg_node *n):
    cdef uint8_t op = cg_base_op(n)
    if op == CG_POW:
        if n.flags & CG_FLAG_INT_EXPONENT:
            return f"**{int(n.kids.ext.arg)}"
        return f"**{n.kids.ext.arg!r}"
    if op == CG_OPAQUE:
        d = attrs_of(<Value>owner_of(n))
        return d.get("_op", "") if d is not None else ""
    if op == CG_LEAKY_RELU:
        return f"{OP_SYMBOLS[op]}({n.kids.ext.arg!r})"
    return OP_SYMBOLS[op]


cdef str describe(cg_node *n):
    cdef cg_node **k = cg_kids(n)
    cdef uint8_t op = cg_base_op(n)
    if op == CG_ADD or op == CG_MUL or op == CG_POWV:
        return f"{k[0].data!r} {op_name(n)} {k[1].data!r}"
    if op == CG_MAX or op == CG_MIN:
        return f"{op_name(n)}({k[0].data!r}, {k[1].data!r})"
    if op == CG_POW:
        return f"{k[0].data!r} ** {n.kids.ext.arg!r}"
    if op == CG_SUM:
        return f"a sum of {n.n_kids} values"
    if op == CG_DOT:
        return f"a dot product of {cg_dot_of(n).m} pairs"
    if op == CG_LOGSUMEXP:
        return f"logsumexp of {n.n_kids} values"
    return f"{op_name(n)}({k[0].data!r})"


cdef int raise_status(cg_status status, cg_node *failed, bint in_backward,
                      object grad_in=None) except -1:
    """The exception for status at node failed (grad_in: the gradient that flowed into
    it, when failed.grad no longer holds it)."""
    where = "backward() of " if in_backward else ""
    if status == CG_ERR_PYTHON:
        return -1   # a Python _backward raised: its exception stands
    if status == CG_ERR_NOMEM:
        raise MemoryError("out of memory while walking the graph")
    what = describe(failed)
    if status == CG_ERR_ZERODIV and cg_base_op(failed) == CG_RECIP:
        raise ZeroDivisionError(f"{where}{what}: division by zero")
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
        if failed.op != CG_POW:
            raise ValueError(f"math domain error: {what} is undefined there")
        raise ValueError(
            f"{what}: a negative number cannot be raised to a fractional power "
            f"(the result would be complex)")
    if in_backward:
        raise OverflowError(
            f"backward() of {what}: a gradient overflowed to inf or nan "
            f"(gradient flowing in: {failed.grad if grad_in is None else grad_in!r})")
    raise OverflowError(f"{what} overflows a float (the result would be inf or nan)")


# ---- building nodes ---------------------------------------------------------------------

cdef inline dict attrs_of(Value v):
    """v's attributes (its __dict__), or None: the dict is made only when needed."""
    return <dict>v.attrs if v.attrs != NULL else None


cdef dict new_attrs(Value v):
    cdef dict attrs
    if v.attrs == NULL:
        attrs = {}
        Py_INCREF(attrs)
        v.attrs = <PyObject *>attrs
    return <dict>v.attrs


cdef void track(Value v) noexcept:
    """Hand v to the cyclic GC: it holds, or is built over, Python objects that may lead
    back to it."""
    if not PyObject_GC_IsTracked(v):
        PyObject_GC_Track(v)
    v.node.flags |= CG_FLAG_TRACKED


cdef Value unary(uint8_t op, Value a, double arg=0.0, uint8_t flags=0):
    sync_nodes()
    cdef Value out = Value.__new__(Value)
    out.node.op = op
    out.node.flags = flags
    out.node.n_kids = 1
    out.node.kids.pair[0] = &a.node
    if CG_OP_INFO[op].flags & CG_OPF_HAS_ARG:
        out.node.kids.ext.arg = arg
    cdef cg_status status = cg_eval_inline(&out.node)
    if status != CG_OK:
        out.node.n_kids = 0
        raise_status(status, &out.node, False)
    Py_INCREF(a)
    if a.node.flags & CG_FLAG_TRACKED:
        track(out)
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
    if (a.node.flags | b.node.flags) & CG_FLAG_TRACKED:
        track(out)
    return out


cdef Value nary(uint8_t op, list kids, uint8_t flags):
    sync_nodes()
    cdef Value out = Value.__new__(Value)
    out.node.op = op
    out.node.flags = flags
    if set_kids(&out.node, tuple(kids)):
        track(out)
    cdef cg_status status = cg_eval_inline(&out.node)
    if status != CG_OK:
        raise_status(status, &out.node, False)
    return out


cdef Value power(Value base, object exponent):
    """base ** exponent for a number exponent; None if exponent is not a number."""
    cdef double k
    if type(exponent) is int or (type(exponent) is not float
                                 and isinstance(exponent, numbers.Integral)):
        return unary(CG_POW, base, float(exponent), CG_FLAG_INT_EXPONENT)
    if as_double(exponent, &k):
        return unary(CG_POW, base, k, 0)
    return None


cdef bint compared(object other, double *d) except -1:
    """other's number for a comparison: a Value's data, or a real number."""
    if isinstance(other, Value):
        sync_node(<Value>other)
        d[0] = (<Value>other).node.data
        return True
    return as_double(other, d)


cdef Py_ssize_t hash_pointer(void *p) noexcept:
    """object.__hash__'s value (CPython's _Py_HashPointer): a type that defines
    comparisons must define its hash, and Values keep identity's."""
    cdef size_t y = <size_t>p
    y = (y >> 4) | (y << (8 * sizeof(void *) - 4))
    cdef Py_ssize_t h = <Py_ssize_t>y
    return -2 if h == -1 else h


cdef double leaky_slope(object slope) except? -1.0:
    cdef double d = to_double(slope, "negative_slope")
    if not (0.0 <= d <= 1.0):
        raise ValueError(f"negative_slope must be in [0, 1], got {slope!r}")
    return d


cdef double last_divisor = 1.0, last_reciprocal = 1.0   # pow() is ~30 ns; programs
                                                        # divide by one constant often


cdef double reciprocal(double d, object number) except? -1.0:
    """d ** -1 as Python computes it (micrograd divides by multiplying by it); number is
    what d came from, for the errors."""
    global last_divisor, last_reciprocal
    cdef double inverse
    if d == last_divisor:     # never 0 or NaN: those are not kept
        return last_reciprocal
    if d == 0.0:
        raise ZeroDivisionError(f"division by zero: cannot divide a Value by {number!r}")
    inverse = cg_reciprocal(d)
    if isfinite(d) and not isfinite(inverse):
        raise OverflowError(f"cannot divide a Value by {number!r}: its reciprocal "
                            f"overflows a float")
    last_divisor, last_reciprocal = d, inverse
    return inverse


# ---- what a node is made of, as Python sees it ---------------------------------------------

cdef list children_of(cg_node *n):
    """The Values n was computed from, in order (a dot over rows: through the rows,
    weights, inputs, then the bias, as a flat dot stores them)."""
    cdef cg_node **kids = cg_kids(n)
    cdef uint32_t i
    cdef cg_dot_parts d
    cdef list out = []
    if cg_base_op(n) == CG_DOT and n.flags & CG_FLAG_ROWS:
        d = cg_dot_of(n)
        for i in range(d.m):
            out.append(owner_of(d.w[i]))
        for i in range(d.m):
            out.append(owner_of(d.x[i]))
        if d.bias != NULL:
            out.append(owner_of(d.bias))
        return out
    for i in range(n.n_kids):
        out.append(owner_of(kids[i]))
    return out


cdef object local_grads_of(cg_node *n):
    """d(n)/d(kid) for each of children_of(n), computed as backward() computes the
    contributions with an incoming gradient of 1.0 (x * 1.0 == x exactly)."""
    cdef uint8_t op = cg_base_op(n)
    cdef cg_node **k = cg_kids(n)
    cdef uint32_t i
    cdef cg_dot_parts d
    cdef double da, db
    cdef cg_status status
    cdef list out = []
    if n.op & CG_OP_PYTHON_BACKWARD and has_python_backward(n):
        return None
    if op == CG_LEAF:
        return ()
    if op == CG_OPAQUE or op == CG_ROW:
        return None
    if op == CG_LOCAL:
        for i in range(n.n_kids):
            out.append(cg_local_grads(n)[i])
    elif op == CG_SUM:
        out = [1.0] * n.n_kids
    elif op == CG_LOGSUMEXP:
        for i in range(n.n_kids):
            out.append(cg_logsumexp_partial(k[i].data, n.data))
    elif op == CG_DOT:
        d = cg_dot_of(n)
        for i in range(d.m):
            out.append(d.x[i].data)
        for i in range(d.m):
            out.append(d.w[i].data)
        if d.bias != NULL:
            out.append(1.0)
    else:
        status = cg_backward_scalar(op, n.kids.ext.arg, k[0].data,
                                    k[1].data if n.n_kids == 2 else 0.0, n.data, 1.0,
                                    &da, &db)
        if status != CG_OK:
            raise_status(status, n, True)
        out.append(da)
        if n.n_kids == 2:
            out.append(db)
    return tuple(out)


# ---- the Value --------------------------------------------------------------------------

cdef int sweeps_running = 0    # backward() sweeps in progress (Python _backward may run)
# The order backward() sweeps is kept between calls: a large graph's order is megabytes,
# and fresh pages cost a fault each (measured: ~2.5 ns per node of a 1e6-node graph).
cdef cg_vec backward_order
cdef size_t KEEP_ORDER = 1 << 22


cdef class Value:
    """A scalar in a computation graph: its data, its gradient and how it was made.

    micrograd's API: ``Value(data, _children=(), _op='', label='')``, the operators
    ``+ - * / **``, ``relu()``, ``backward()``.  Beyond micrograd: ``tanh()``, ``exp()``,
    ``log()``, ``sigmoid()``, ``Value ** Value`` and ``number ** Value``.

    Extend it as micrograd is extended: build a node by hand and give it a chain rule,
    ``out = Value(f(x.data), (x,), 'f'); out._backward = closure`` (the closure runs
    when backward() reaches ``out``); add methods to the class; subclass it; set
    attributes on a Value; keep weak references to it.
    """
    __array_ufunc__ = None  # numpy scalars hand `np.float64(2) * v` to Value.__rmul__
    label = ''              # a Value's label lives in its __dict__ once it is given one

    def __init__(self, data, _children=(), _op='', label='', *, children=None,
                 local_grads=None):
        # Everything that can fail or run the caller's code comes first; the node
        # changes only once its new state is known good.
        cdef double d = to_double(data, "Value() data")
        cdef tuple kids
        cdef tuple grads = None
        if children is not None:
            if _children != ():
                raise TypeError("Value() got both _children (micrograd's name) and "
                                "children (microgpt's): give one")
            _children = children
        kids = tuple(_children)
        check_kids(kids)
        if local_grads is not None:
            if not (type(_op) is str and _op == ''):
                raise TypeError("Value() got both _op (micrograd's label) and "
                                "local_grads (microgpt's): give one")
            _op = local_grads
        # The rule between the two APIs: a str is micrograd's _op label, anything else
        # microgpt's local gradients (one number per child).
        if not isinstance(_op, str):
            grads = as_local_grads(_op, len(kids))
            name = None
        else:
            name = str(_op) if kids or _op else None
        if self.node.n_kids and sweeps_running:
            raise RuntimeError("a Value that has children cannot be re-initialised while "
                               "backward() runs a Python _backward")
        sync_nodes()
        nodes_changed()
        cdef cg_node old = self.node   # its kids are released last, after the swap
        memset(&self.node, 0, sizeof(cg_node))
        self.node.data = d
        self.node.flags = old.flags & CG_FLAG_TRACKED
        try:
            if grads:
                if set_local_kids(&self.node, kids, grads):
                    track(self)
            elif set_kids(&self.node, kids):
                track(self)
        finally:
            forget(&old)
        attrs = attrs_of(self)
        if attrs is not None:   # what micrograd's __init__ resets
            attrs.pop("_backward", None)
            attrs.pop("_op", None)
        if name is not None:
            # a node built by hand, as micrograd's internals do: no math of its own;
            # its chain rule is the `_backward` the caller assigns next, if any
            self.node.op = CG_OPAQUE
            if name:
                new_attrs(self)["_op"] = name
        if label or (attrs is not None and "label" in attrs):
            new_attrs(self)["label"] = label
        if type(self) is not Value:
            track(self)         # a subclass may hold anything

    # -- attributes --

    def __setattr__(self, name, value):
        PyObject_GenericSetAttr(self, name, <PyObject *>value)
        if self.attrs != NULL:
            attrs_changed(self)

    def __delattr__(self, name):
        PyObject_GenericSetAttr(self, name, NULL)
        if self.attrs != NULL:
            attrs_changed(self)

    @property
    def data(self):
        sync_node(self)
        return self.node.data

    @data.setter
    def data(self, value):
        cdef double d = to_double(value, "Value.data")
        sync_nodes()
        self.node.data = d
        nodes_changed()

    @property
    def grad(self):
        sync_node(self)
        return self.node.grad

    @grad.setter
    def grad(self, value):
        cdef double d = to_double(value, "Value.grad")
        sync_nodes()
        self.node.grad = d
        nodes_changed()
        if self.attrs != NULL:
            drop_grad_value(self)

    @property
    def _op(self):
        return op_name(&self.node)

    @property
    def _prev(self):
        """The set of the Values this one was computed from (micrograd's)."""
        return set(children_of(&self.node))

    @property
    def _children(self):
        """The Values this one was computed from, in order (microgpt's)."""
        return tuple(children_of(&self.node))

    @property
    def _local_grads(self):
        """d(this)/d(child) for each of ``_children``, as numbers (microgpt's): the
        ones given to ``Value(data, children, local_grads)``, or computed from the op's
        derivative.  None for a node whose chain rule is Python code or that has none
        (built by hand with micrograd's ``_op`` label)."""
        sync_nodes()
        return local_grads_of(&self.node)

    def __repr__(self):
        sync_node(self)
        return f"Value(data={self.node.data!r}, grad={self.node.grad!r})"

    # -- arithmetic, decomposed exactly as micrograd does --

    def __add__(self, other):
        cdef Value b = as_value(other)
        if b is None:
            return not_an_operand(other)
        return binary(CG_ADD, self, b)

    def __radd__(self, other):      # `0 + v`: the first step of every sum()
        cdef Value b = as_value(other)
        if b is None:
            return not_an_operand(other)
        return binary(CG_ADD, self, b)

    def __mul__(self, other):
        cdef Value b = as_value(other)
        if b is None:
            return not_an_operand(other)
        return binary(CG_MUL, self, b)

    def __rmul__(self, other):
        cdef Value b = as_value(other)
        if b is None:
            return not_an_operand(other)
        return binary(CG_MUL, self, b)

    def __neg__(self):
        return binary(CG_MUL, self, leaf(-1.0))

    def __sub__(self, other):
        if isinstance(other, Value):
            return binary(CG_ADD, self, binary(CG_MUL, <Value>other, leaf(-1.0)))
        cdef Value b = as_value(other)
        if b is None:
            return not_an_operand(other)
        b.node.data = -b.node.data
        return binary(CG_ADD, self, b)

    def __rsub__(self, other):
        cdef Value a = as_value(other)
        if a is None:
            return not_an_operand(other)
        return binary(CG_ADD, binary(CG_MUL, self, leaf(-1.0)), a)

    def __truediv__(self, other):
        cdef double d
        if isinstance(other, Value):
            return binary(CG_MUL, self, power(<Value>other, -1))
        if not as_double(other, &d):
            return not_an_operand(other)
        return binary(CG_MUL, self, leaf(reciprocal(d, other)))

    def __rtruediv__(self, other):
        cdef Value a = as_value(other)
        if a is None:
            return not_an_operand(other)
        return binary(CG_MUL, power(self, -1), a)

    def __pow__(self, other, modulo=None):
        if modulo is not None:
            return NotImplemented
        if type(other) is float:     # microgpt's `** -0.5`, without the ABC checks
            return unary(CG_POW, self, PyFloat_AS_DOUBLE(other), 0)
        if isinstance(other, Value):
            return binary(CG_POWV, self, <Value>other)
        out = power(self, other)
        return not_an_operand(other) if out is None else out

    def __rpow__(self, other, modulo=None):
        cdef Value base = as_value(other)
        if modulo is not None:
            return NotImplemented
        if base is None:
            return not_an_operand(other)
        return binary(CG_POWV, base, self)

    # -- functions --

    def relu(self):
        """max(0, x), written as micrograd's ReLU (its gradient is 0 at 0)."""
        return unary(CG_RELU, self)

    def tanh(self):
        """tanh(x) (C's tanh: stable, Value(1000).tanh() is 1.0)."""
        return unary(CG_TANH, self)

    def exp(self):
        """e ** x (OverflowError past ~709.78)."""
        return unary(CG_EXP, self)

    def log(self):
        """The natural log (ValueError for x <= 0)."""
        return unary(CG_LOG, self)

    def sigmoid(self):
        """1 / (1 + e ** -x), computed without overflow either side."""
        return unary(CG_SIGMOID, self)

    def heaviside(self):
        """1.0 where this Value is > 0, else 0.0: ReLU's derivative.  Its own derivative
        is 0 (taken as 0 at the jump too, as PyTorch does for ReLU)."""
        return unary(CG_STEP, self)

    def reciprocal(self):
        """1.0 / this Value, divided (``v ** -1``, micrograd's way of dividing, rounds
        differently in the last bit for some numbers): log's derivative."""
        return unary(CG_RECIP, self)

    def sin(self):
        return unary(CG_SIN, self)

    def cos(self):
        return unary(CG_COS, self)

    def sqrt(self):
        """math.sqrt (ValueError below 0; backward() at 0 raises: the slope is infinite)."""
        return unary(CG_SQRT, self)

    def abs(self):
        """|x| (its derivative is sign(x), 0 at 0 as in PyTorch); also abs(v)."""
        return unary(CG_ABS, self)

    def __abs__(self):
        return unary(CG_ABS, self)

    def sign(self):
        """1.0, -1.0, or 0.0 at 0: abs's derivative, itself of derivative 0."""
        return unary(CG_SIGN, self)

    def erf(self):
        return unary(CG_ERF, self)

    def gelu(self, approximate='none'):
        """x * Phi(x), PyTorch's GELU: ``approximate='tanh'`` is the tanh form
        (GPT-2's, PyTorch's approximate='tanh'), else the exact erf form."""
        if approximate == 'tanh':
            return unary(CG_GELU_TANH, self)
        if approximate != 'none':
            raise ValueError(f"approximate must be 'none' or 'tanh', not {approximate!r}")
        return unary(CG_GELU, self)

    def silu(self):
        """x * sigmoid(x) (SiLU, swish)."""
        return unary(CG_SILU, self)

    def softplus(self):
        """log(1 + e**x), computed without overflow: max(x, 0) + log1p(e**-|x|)."""
        return unary(CG_SOFTPLUS, self)

    def leaky_relu(self, negative_slope=0.01):
        """x if x > 0 else x * negative_slope (a slope in [0, 1], PyTorch's default)."""
        return unary(CG_LEAKY_RELU, self, leaky_slope(negative_slope), 0)

    def max(self, other):
        """The larger of this Value and other (a Value or a number), as Python's
        max(a, b) picks it (this one at a tie); the gradient goes to the one picked."""
        cdef Value b = as_value(other)
        if b is None:
            raise TypeError(f"max() needs a Value or a number, not {type(other).__name__}")
        return binary(CG_MAX, self, b)

    def min(self, other):
        """The smaller of this Value and other, as Python's min(a, b) picks it."""
        cdef Value b = as_value(other)
        if b is None:
            raise TypeError(f"min() needs a Value or a number, not {type(other).__name__}")
        return binary(CG_MIN, self, b)

    def clamp(self, low=None, high=None):
        """This Value limited to [low, high] (either may be None); the gradient is 1
        inside, boundaries included, and 0 outside, as PyTorch's clamp."""
        out = self
        if high is not None:
            out = out.min(high)
        if low is not None:
            out = out.max(low)
        return out

    # -- comparisons: on the data, as Python compares floats (argmax code); == stays
    #    identity, as micrograd's (Values are dict keys and set members) --

    def __lt__(self, other):
        cdef double d
        if not compared(other, &d):
            return NotImplemented
        sync_node(self)
        return self.node.data < d

    def __le__(self, other):
        cdef double d
        if not compared(other, &d):
            return NotImplemented
        sync_node(self)
        return self.node.data <= d

    def __gt__(self, other):
        cdef double d
        if not compared(other, &d):
            return NotImplemented
        sync_node(self)
        return self.node.data > d

    def __ge__(self, other):
        cdef double d
        if not compared(other, &d):
            return NotImplemented
        sync_node(self)
        return self.node.data >= d

    def __hash__(self):
        return hash_pointer(<void *>self)

    # -- gradients --

    def backward(self, create_graph=False):
        """Set the gradient of every node this one depends on (leaf grads accumulate).

        ``create_graph=True`` also records the gradient computation as graph nodes, as
        PyTorch does: each leaf's gradient is then kept as a Value in its
        ``grad_value`` attribute, which can be differentiated again (cgrad.grad)."""
        global sweeps_running
        if create_graph:
            from cgrad import autograd
            return autograd.backward(self)
        cdef cg_vec local
        cdef cg_vec *order = &backward_order
        cdef cg_node *failed = NULL
        if sweeps_running:             # a Python _backward calling backward(): its own
            memset(&local, 0, sizeof(local))
            order = &local
        sync_nodes()
        sweeps_running += 1
        cdef cg_status status = cg_backward(&self.node, order, &failed)
        sweeps_running -= 1
        nodes_changed()
        if order is not &backward_order or order.cap > KEEP_ORDER:
            cg_vec_free(order)
        if status != CG_OK:
            raise_status(status, failed, True)

    def _backward(self):
        """Apply this node's local chain rule once: add to its children's grads.

        A node built by hand takes the chain rule assigned to it, micrograd's way:
        ``out._backward = closure``."""
        sync_nodes()
        cdef cg_status status = cg_backward_inline(&self.node)
        nodes_changed()
        if status != CG_OK:
            raise_status(status, &self.node, True)

    # -- copying --

    def __reduce__(self):
        """A node whose kids are all leaves pickles as itself, its kids inline.  A deeper
        graph pickles as the list of its nodes, kids first, each then saved in that
        plain form over kids pickle has already saved: pickle (and deepcopy) never
        recurse deeper than one node, so a million-deep chain pickles."""
        sync_nodes()
        if self.node.flags & CG_FLAG_FLATTENED:
            self.node.flags &= ~CG_FLAG_FLATTENED
            return plain_reduce(self)
        if self.node.n_kids == 0:
            return plain_reduce(self)
        order = interior_values(self)
        if len(order) == 1:
            return plain_reduce(self)
        for v in order:
            (<Value>v).node.flags |= CG_FLAG_FLATTENED
        return (_last_node, (tuple(order) + (FlatDone(order),),))

    def __copy__(self):
        func, args, state = plain_reduce(self)
        clone = func(*args)
        if state is not None:
            clone.__setstate__(state)
        return clone

    def __getstate__(self):
        """The attributes (None if there are none), and for a subclass with __slots__
        (dict or None, {slot: value}), as copyreg gives them.  A subclass may define its
        own __getstate__ and __setstate__; pickle and copy call them."""
        attrs = attrs_of(self)
        state = dict(attrs) if attrs else None
        if type(self) is Value:
            return state
        slots = {}
        for cls in type(self).__mro__:
            if cls is Value:
                break
            names = cls.__dict__.get("__slots__", ())
            for name in ((names,) if isinstance(names, str) else names):
                if name in ("__dict__", "__weakref__"):
                    continue
                if name.startswith("__") and not name.endswith("__"):
                    name = f"_{cls.__name__.lstrip('_')}{name}"   # name mangling
                try:
                    slots[name] = object.__getattribute__(self, name)
                except AttributeError:
                    pass
        return (state, slots) if slots else state

    def __setstate__(self, state):
        slots = None
        if type(state) is tuple and len(state) == 2:
            state, slots = state
        if state:
            new_attrs(self).update(state)
            attrs_changed(self)
        if slots:
            for name, value in slots.items():
                PyObject_GenericSetAttr(self, name, <PyObject *>value)


cdef tuple plain_reduce(Value v):
    """Value.__reduce__'s one-node form: the node over its kids (a method would give
    every Value a vtable pointer)."""
    cdef cg_node **k = cg_kids(&v.node)
    cdef uint32_t i
    cdef list kid_list = []
    cdef uint8_t op = cg_base_op(&v.node)
    for i in range(v.node.n_kids):
        kid_list.append(owner_of(k[i]))
    if CG_OP_INFO[op].flags & CG_OPF_HAS_ARG:
        arg = v.node.kids.ext.arg
    elif op == CG_LOCAL:
        arg = tuple([cg_local_grads(&v.node)[i] for i in range(v.node.n_kids)])
    else:
        arg = 0.0
    return (_rebuild, (type(v), v.node.data, v.node.grad, OP_KEYS[op], arg,
                       v.node.flags & ~NOT_PICKLED_FLAGS,
                       tuple(kid_list)), v.__getstate__())


# node state, not the Value's: never written into a pickle or read from one
NOT_PICKLED_FLAGS = CG_FLAG_TRACKED | CG_FLAG_KID_ARRAY | CG_FLAG_FLATTENED


class FlatDone:
    """The last item of a flattened graph: pickle (or deepcopy) reaches it once every
    node before it has been saved, and it clears their marks.  A pickle that fails half
    way drops it unreached: then it clears them as it goes."""

    def __init__(self, order):
        self.order = order

    def clear(self):
        cdef Value v
        for v in self.order:
            v.node.flags &= ~CG_FLAG_FLATTENED
        self.order = []

    def __reduce__(self):
        self.clear()
        return (int, ())

    def __deepcopy__(self, memo):
        self.clear()
        return 0

    def __del__(self):
        self.clear()


def _last_node(items):
    """A flattened graph's root: its last node (before the FlatDone mark)."""
    return items[len(items) - 2]


def _gradient_numbers(list outputs, list seeds, list inputs):
    """d(sum(seed * output))/d(input) for each input, as floats (cgrad.grad without
    create_graph): backward()'s own chain rule over the graph, every node's grad left
    as it was.  outputs and inputs are lists of Values, seeds of floats."""
    global sweeps_running
    cdef Py_ssize_t n_roots = len(outputs), n_inputs = len(inputs), i
    cdef cg_node **nodes = <cg_node **>malloc((n_roots + n_inputs + 1) * sizeof(cg_node *))
    cdef double *numbers = <double *>malloc((n_roots + n_inputs + 1) * sizeof(double))
    cdef cg_node *failed = NULL
    cdef double failed_grad = 0.0
    cdef cg_status status
    try:
        if nodes == NULL or numbers == NULL:
            raise MemoryError()
        for i in range(n_roots):
            nodes[i] = &(<Value?>outputs[i]).node
            numbers[i] = seeds[i]
        for i in range(n_inputs):
            nodes[n_roots + i] = &(<Value?>inputs[i]).node
        sync_nodes()
        sweeps_running += 1
        status = cg_gradients(nodes, numbers, n_roots, nodes + n_roots, n_inputs,
                              numbers + n_roots, &failed, &failed_grad)
        sweeps_running -= 1
        nodes_changed()
        if status != CG_OK:
            raise_status(status, failed, True, failed_grad)
        return [numbers[n_roots + i] for i in range(n_inputs)]
    finally:
        free(nodes)
        free(numbers)


cdef list interior_values(Value root):
    """The Values of root's interior nodes, kids first, root last."""
    cdef cg_vec order
    cdef size_t n_first, i
    cdef cg_node *root_node = &root.node
    memset(&order, 0, sizeof(order))
    if cg_interior_order(&root_node, 1, &order, &n_first) < 0:
        raise MemoryError()
    try:
        return [owner_of(<cg_node *>order.items[i]) for i in range(order.len)]
    finally:
        cg_vec_free(&order)


cdef int drop_grad_value(Value v) except -1:
    """v.grad was set: the Value form of its gradient (backward(create_graph=True))
    no longer matches it, and holding it would keep its graph (and a cycle back to v)."""
    cdef dict attrs = attrs_of(v)
    if attrs is not None and "grad_value" in attrs:
        del attrs["grad_value"]
    return 0


def _drop_grad_values(values):
    """drop_grad_value over a list of Values (an optimizer's zero_grad)."""
    for v in values:
        if (<Value>v).attrs != NULL:
            drop_grad_value(<Value>v)


def _zero_grads(values):
    """`for p in values: p.grad = 0` (nn.Module.zero_grad) in one pass: a cgrad Value's
    grad set in C, anything else through its own ``grad`` attribute."""
    cdef Value v
    sync_nodes()
    try:
        for item in values:
            if type(item) is Value:
                v = <Value>item
                v.node.grad = 0.0
                if v.attrs != NULL:
                    drop_grad_value(v)
            else:
                item.grad = 0
    finally:
        nodes_changed()


def _track_graph(Value root):
    """Hand root and every node it depends on to the cyclic GC: a gradient graph
    stored on a leaf it leads back to (grad_value) is a cycle the GC must see."""
    cdef Value v
    cdef cg_node **kids
    cdef uint32_t j
    track(root)
    for v in interior_values(root):
        track(v)
        kids = cg_kids(&v.node)
        for j in range(v.node.n_kids):
            track(<Value>owner_of(kids[j]))


cdef int attrs_changed(Value v) except -1:
    """v's __dict__ changed: its node follows a `_backward` assigned or removed, and v
    is handed to the cyclic GC once its attributes may lead back to it."""
    cdef dict attrs = attrs_of(v)
    if "_backward" in attrs:
        v.node.op |= CG_OP_PYTHON_BACKWARD
    else:
        v.node.op &= ~CG_OP_PYTHON_BACKWARD
    if not (v.node.flags & CG_FLAG_TRACKED) and PyObject_GC_IsTracked(attrs):
        track(v)   # the dict holds containers (CPython tracks it then), not only atoms
    return 0


cdef cg_status python_backward(cg_node *n) except CG_ERR_PYTHON:
    """The sweep reached a node whose chain rule may be Python code: run it, or, if the
    node has no `_backward` after all (its __dict__ was handed out, and nothing was
    stored), its op's own chain rule."""
    cdef dict attrs = attrs_of(<Value>owner_of(n))
    cdef cg_status status
    step = attrs.get("_backward") if attrs is not None else None
    if step is not None:
        nodes_changed()   # the sweep wrote grads: a Graph the closure runs reads them
        step()
        sync_nodes()      # and hands its numbers back before the sweep goes on
        nodes_changed()
        return CG_OK
    n.op &= ~CG_OP_PYTHON_BACKWARD
    status = cg_backward_inline(n)
    n.op |= CG_OP_PYTHON_BACKWARD
    return status


cdef bint has_python_backward(cg_node *n) except -1:
    """Whether n's chain rule is a `_backward` in its attributes (the op flag alone may
    be a guess: see dict_get)."""
    if not (n.op & CG_OP_PYTHON_BACKWARD):
        return False
    cdef dict attrs = attrs_of(<Value>owner_of(n))
    if attrs is not None and "_backward" in attrs:
        return True
    n.op &= ~CG_OP_PYTHON_BACKWARD
    return False


cdef PyObject *dict_get(PyObject *o, void *context) noexcept:
    """`v.__dict__` / `vars(v)`: the attribute dict, handed out.  What the caller will
    store in it bypasses __setattr__, so the node is flagged as possibly having a Python
    `_backward` (the sweep then looks, see python_backward) and handed to the cyclic
    GC."""
    cdef PyObject *d = PyObject_GenericGetDict(o, context)
    cdef Value v
    if d != NULL:
        v = <Value>o
        v.node.op |= CG_OP_PYTHON_BACKWARD
        if not (v.node.flags & CG_FLAG_TRACKED):
            track(v)
    return d


cdef bint kids_fit(int op, tuple kids, int flags):
    """Whether a node of this op can have these kids (the C code relies on it)."""
    cdef Py_ssize_t n = len(kids)
    if op == CG_DOT and flags & CG_FLAG_ROWS:  # a row of weights (and bias), one of inputs
        return (n == 2 and isinstance(kids[0], Value) and isinstance(kids[1], Value)
                and (<Value>kids[0]).node.op == CG_ROW and (<Value>kids[1]).node.op == CG_ROW
                and (<Value>kids[0]).node.n_kids == (<Value>kids[1]).node.n_kids
                + ((flags & CG_FLAG_HAS_BIAS) != 0))
    if op == CG_DOT:  # weights, as many inputs, then the bias if flagged
        n -= (flags & CG_FLAG_HAS_BIAS) != 0
        return n >= 0 and n % 2 == 0
    return CG_OP_INFO[op].min_kids <= n and (CG_OP_INFO[op].max_kids < 0
                                             or n <= CG_OP_INFO[op].max_kids)


# The op table (csrc/cgrad.h) as Python sees it.  Pickles store keys: codes may change.
cdef tuple table_column(bint symbols):
    cdef int i
    cdef list names = []
    for i in range(<int>CG_N_OPS):
        names.append((CG_OP_INFO[i].symbol if symbols else CG_OP_INFO[i].key).decode())
    return tuple(names)


cdef tuple OP_KEYS = table_column(False)
cdef tuple OP_SYMBOLS = table_column(True)
cdef dict OP_CODES = {key: code for code, key in enumerate(OP_KEYS)}


def _op_recipes():
    """{key: (Python forward or None, derivative recipe, has a constant, math in the
    table)} for every op: ops.def's strings (see its header)."""
    cdef int i
    cdef dict table = {}
    for i in range(<int>CG_N_OPS):
        info = CG_OP_INFO[i]
        table[OP_KEYS[i]] = (info.py_forward.decode() if info.py_forward != NULL else None,
                             info.derivative.decode(), bool(info.flags & CG_OPF_HAS_ARG),
                             bool(info.flags & CG_OPF_UNARY_MATH))
    return table


def _op_table():
    """{key: (symbol, min kids, max kids or -1, cannot fail)} for every op."""
    cdef int i
    cdef dict table = {}
    for i in range(<int>CG_N_OPS):
        table[OP_KEYS[i]] = (OP_SYMBOLS[i], CG_OP_INFO[i].min_kids, CG_OP_INFO[i].max_kids,
                             bool(CG_OP_INFO[i].flags & CG_OPF_CANNOT_FAIL))
    return table


def _rebuild(cls, data, grad, op_key, arg, flags, kids):
    """Rebuild a pickled Value (data is stored, not recomputed; attributes, the label
    and a hand-built node's _op come back through __setstate__)."""
    cdef Value v
    cdef int op
    kids = tuple(kids)
    code = OP_CODES.get(op_key) if type(op_key) is str else None
    if code is None or type(flags) is not int or not (0 <= flags < 256):
        raise ValueError(f"corrupt pickled Value: unknown op {op_key!r}")
    op = code
    if not (isinstance(cls, type) and issubclass(cls, Value)):
        raise ValueError(f"corrupt pickled Value: {cls!r} is not a Value class")
    check_kids(kids)
    if not kids_fit(op, kids, flags):
        raise ValueError(f"corrupt pickled Value: op {op_key!r} cannot have "
                         f"{len(kids)} children")
    if op == CG_ROW:
        v = row_node(kids)
    elif op == CG_LOCAL:
        v = cls.__new__(cls)
        if set_local_kids(&v.node, kids, as_local_grads(arg, len(kids))) or \
                type(v) is not Value:
            track(v)
    else:
        v = cls.__new__(cls)
        if set_kids(&v.node, kids) or type(v) is not Value:
            track(v)
        v.node.op = op
        v.node.flags |= flags & ~NOT_PICKLED_FLAGS
        if CG_OP_INFO[op].flags & CG_OPF_HAS_ARG:
            v.node.kids.ext.arg = to_double(arg, "a pickled op constant")
    v.node.data = to_double(data, "pickled data")
    v.node.grad = to_double(grad, "a pickled gradient")
    return v


# The op codes cgrad 0.1 wrote into pickles, frozen: codes today follow ops.def.
CODES_0_1 = ("leaf", "+", "*", "**k", "**", "relu", "tanh", "exp", "log", "sigmoid", "sum",
             "dot", "logsumexp", "opaque", "row", "step", "recip")


def _restore(data, grad, label, op, arg, flags, kids, op_text):
    """Rebuild a Value pickled by cgrad 0.1 (ops stored as codes, which were these)."""
    if type(op) is not int or not (0 <= op < len(CODES_0_1)):
        raise ValueError(f"corrupt pickled Value: unknown op code {op!r}")
    v = _rebuild(Value, data, grad, CODES_0_1[op], arg, flags, kids)
    v.__setstate__({"label": label} if label else None)
    if CODES_0_1[op] == "opaque" and op_text:
        v.__setstate__({"_op": op_text})
    return v


# ---- fused n-ary nodes ------------------------------------------------------------------

cdef list values_of(values, str what):
    """The items of values as Values (numbers become leaves)."""
    cdef list out = []
    if isinstance(values, Value):   # not iterable: say what it is
        hint = (" (a layer of one neuron returns its Value alone, as micrograd's does: "
                "pass [value] to a layer after it)" if what == "a layer's inputs" else "")
        raise TypeError(f"{what} must be a list of Values or numbers, not a single "
                        f"Value{hint}")
    for v in values:
        k = as_value(v)
        if k is None:
            raise TypeError(f"{what} must be Values or numbers, got {type(v).__name__}")
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


# nn's activations: the op, and its constant (leaky_relu's slope)
cdef dict ACTIVATION_OPS = {'relu': (CG_RELU, 0.0), 'tanh': (CG_TANH, 0.0),
                            'sigmoid': (CG_SIGMOID, 0.0), 'gelu': (CG_GELU, 0.0),
                            'gelu_tanh': (CG_GELU_TANH, 0.0), 'silu': (CG_SILU, 0.0),
                            'softplus': (CG_SOFTPLUS, 0.0), 'leaky_relu': (CG_LEAKY_RELU, 0.01)}


cdef class ParameterList(list):
    """A neuron's weights: a list that remembers the row node built over it (and the
    bias) until it is changed, so that every dot node of a layer reads one shared row.
    The row is not reachable from Python: it is checked against the list where it is
    used, and any change to the list forgets it."""
    cdef Value row
    cdef object row_bias

    def __reduce__(self):
        return (ParameterList, (list(self),))

    cdef void forget_row(self) noexcept:
        self.row = None
        self.row_bias = None

    def __setitem__(self, index, value):
        self.forget_row()
        list.__setitem__(self, index, value)

    def __delitem__(self, index):
        self.forget_row()
        list.__delitem__(self, index)

    def __iadd__(self, other):
        self.forget_row()
        return list.__iadd__(self, other)

    def __imul__(self, n):
        self.forget_row()
        return list.__imul__(self, n)

    def append(self, value):
        self.forget_row()
        list.append(self, value)

    def extend(self, values):
        self.forget_row()
        list.extend(self, values)

    def insert(self, index, value):
        self.forget_row()
        list.insert(self, index, value)

    def pop(self, index=-1):
        self.forget_row()
        return list.pop(self, index)

    def remove(self, value):
        self.forget_row()
        list.remove(self, value)

    def clear(self):
        self.forget_row()
        list.clear(self)

    def sort(self, *, key=None, reverse=False):
        self.forget_row()
        list.sort(self, key=key, reverse=reverse)

    def reverse(self):
        self.forget_row()
        list.reverse(self)


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
    row.node.kids.ext.many = slots
    for i in range(count):
        kid = kids[i]
        slots[i] = &(<Value>kid).node
        Py_INCREF(kid)
    row.node.n_kids = <uint32_t>count
    return row


cdef Value weight_row(object weights, Value bias, Py_ssize_t n_inputs):
    """The row of a neuron's weights and bias (None: no bias): remembered on its
    ParameterList, else built for this call.  Every call checks the width: a neuron fed
    more or fewer inputs than it has weights is an error, never a read past the row."""
    cdef ParameterList cached = weights if type(weights) is ParameterList else None
    cdef Value row
    cdef uint32_t extra = bias is not None
    # the remembered row, if the list still has its length (list.append(w, v) called
    # on the base class bypasses the forgetting) and the width fits; else built anew,
    # which raises for a width that does not fit
    if cached is not None and cached.row is not None and cached.row_bias is bias \
            and cached.row.node.n_kids == <uint32_t>len(cached) + extra \
            and cached.row.node.n_kids == <uint32_t>n_inputs + extra:
        return cached.row
    cdef list items = values_of(weights, "a neuron's weights")
    if len(items) != n_inputs:
        raise ValueError(f"this neuron takes {len(items)} inputs, got {n_inputs}")
    if bias is not None:
        items.append(bias)
    row = row_node(items)
    if cached is not None:
        cached.row = row
        cached.row_bias = bias
    return row


cdef Value row_dot(Value weights, Value inputs, bint has_bias):
    """The dot node of a weight row (ending with the bias, if it has one) and an input
    row, not yet computed (see evaluate_row_dots)."""
    cdef Value out = Value.__new__(Value)
    out.node.op = CG_DOT
    out.node.flags = CG_FLAG_ROWS | (CG_FLAG_HAS_BIAS if has_bias else 0)
    out.node.n_kids = 2
    out.node.kids.pair[0] = &weights.node
    out.node.kids.pair[1] = &inputs.node
    Py_INCREF(weights)
    Py_INCREF(inputs)
    return out


cdef int evaluate_row_dots(list dots) except -1:
    """Compute the dot nodes of one layer call, several side by side."""
    cdef Py_ssize_t n = len(dots), i
    if n == 0:
        return 0
    cdef cg_node **nodes = <cg_node **>malloc(n * sizeof(cg_node *))
    if nodes == NULL:
        raise MemoryError()
    for i in range(n):
        nodes[i] = &(<Value>dots[i]).node
    cdef size_t failed = 0
    sync_nodes()                # the rows read their items' current numbers
    cdef cg_status status = cg_eval_row_dots(nodes, n, &failed)
    free(nodes)
    if status != CG_OK:
        raise_status(status, &(<Value>dots[failed]).node, False)
    return 0


def linear(rows, x):
    """``[dot(w, x) for w in rows]``: one vector x times each row of a weight matrix,
    with no bias, each sum taken as ``dot()`` takes it (the same bits).  Built as an
    ``nn.Layer`` builds its neurons, one dot node per row over the row's weights and
    one row of inputs that the call's dots share, so that a recorded Graph can run such
    calls over a batch (or a sequence's positions) as matrix products.  That takes
    rows given as ``nn.ParameterList``s (``nn.Neuron.w`` is one), which keep their row
    node from one call to the next; a plain list's row is built anew at each call, and
    a recorded graph over such calls runs step by step (the same numbers)."""
    cdef Value inputs = row_node(values_of(x, "linear() inputs"))
    cdef list dots = []
    for i, weights in enumerate(rows):
        try:
            row = weight_row(weights, None, inputs.node.n_kids)
        except ValueError as error:
            raise ValueError(f"linear(): row {i} does not fit x, which has "
                             f"{inputs.node.n_kids} numbers ({error})") from None
        dots.append(row_dot(row, inputs, False))
    evaluate_row_dots(dots)
    return dots


def fused_layer(specs, x):
    """The outputs of a layer's neurons for inputs x, with no Python call per fused
    neuron.  specs holds one item per neuron: either plain data, a tuple (weights, bias,
    activation) -- a list of weight Values (a ParameterList remembers its row node), the
    bias Value and 'relu', 'tanh', 'sigmoid' or 'linear' -- computed as one dot node over
    the weights' row and one input row shared by the layer, then the activation; or any
    callable, called with x."""
    cdef Value inputs = None
    cdef list out = []
    cdef list dots = []         # computed together, before any callable or the end
    cdef list activations = []
    cdef Value bias
    for spec in specs:
        if type(spec) is not tuple:
            finish_neurons(dots, activations, out)
            out.append(spec(x))
            continue
        if len(<tuple>spec) != 3:
            raise ValueError(f"a fused neuron is (weights, bias, activation), got {spec!r:.80}")
        weights, b, activation = <tuple>spec
        if activation != 'linear' and activation not in ACTIVATION_OPS:
            raise ValueError(f"unknown activation {activation!r}: one of "
                             f"{sorted(ACTIVATION_OPS) + ['linear']}")
        if inputs is None:
            inputs = row_node(values_of(x, "a layer's inputs"))
        bias = as_value(b)
        if bias is None:
            raise TypeError(f"a neuron's bias must be a Value, not {type(b).__name__}")
        dots.append(row_dot(weight_row(weights, bias, inputs.node.n_kids), inputs, True))
        activations.append(activation)
    finish_neurons(dots, activations, out)
    return out


cdef int finish_neurons(list dots, list activations, list out) except -1:
    """Compute the pending dots, then their activations, onto out; empties the lists."""
    evaluate_row_dots(dots)
    cdef Py_ssize_t i
    for i in range(len(dots)):
        activation = activations[i]
        if activation == 'linear':
            out.append(dots[i])
        else:
            op, arg = ACTIVATION_OPS[activation]
            out.append(unary(op, <Value>dots[i], arg, 0))
    del dots[:]
    del activations[:]
    return 0


# ---- the Value type's memory and its place in the cyclic GC ----------------------------

cdef Py_ssize_t DICT_OFFSET   # where a Value's __dict__ pointer sits
cdef Py_ssize_t WEAKLIST_OFFSET   # where its list of weak references sits
cdef Py_ssize_t PRESIZE       # bytes Python keeps before an object of a GC type
cdef cg_slab_pool value_slabs


# A Value in memory: the GC header (two words), the object header, the node, the
# attribute dict and the weak reference list.  A constant, so that zeroing it is inline.
cdef enum:
    VALUE_BYTES = 2 * sizeof(void *) + sizeof(PyObject) + sizeof(cg_node) + 2 * sizeof(void *)


cdef PyObject *value_alloc(PyTypeObject *t, Py_ssize_t n_items) noexcept:
    """tp_alloc of exact Values: a chunk of a slab, zeroed, GC header untracked."""
    cdef char *memory = <char *>cg_slab_alloc(&value_slabs)
    if memory == NULL:
        return PyErr_NoMemory()
    cg_zero_block(memory, VALUE_BYTES)   # chunks are 16-byte aligned, VALUE_BYTES % 16 == 0
    return PyObject_Init(<PyObject *>(memory + PRESIZE), t)


cdef PyObject *value_alloc_untracked(PyTypeObject *t, Py_ssize_t n_items) noexcept:
    """tp_alloc of exact Values without slabs (CGRAD_NO_SLABS, unusual GC headers):
    Python's allocator, which tracks GC objects at once; a plain Value is not tracked."""
    cdef PyObject *o = PyType_GenericAlloc(t, n_items)
    if o != NULL:
        PyObject_GC_UnTrack(o)
    return o


cdef void value_free(void *o) noexcept:
    cg_slab_free(&value_slabs, <char *>o - PRESIZE)


cdef void slab_traced(void *slab, size_t n_bytes) noexcept:
    PyTraceMalloc_Track(0, <size_t>slab, n_bytes)   # so tracemalloc counts our nodes


cdef void slab_untraced(void *slab) noexcept:
    PyTraceMalloc_Untrack(0, <size_t>slab)


cdef int value_traverse(PyObject *o, visitproc visit, void *arg) noexcept:
    """What a Value holds: its attributes and its kids (the GC walks them only for the
    Values it tracks)."""
    cdef PyObject *attrs = (<PyObject **>(<char *>o + DICT_OFFSET))[0]
    cdef cg_node *n = <cg_node *>(<char *>o + NODE_OFFSET)
    cdef cg_node **kids = cg_kids(n)
    cdef uint32_t i
    cdef int found
    if attrs != NULL:
        found = visit(attrs, arg)
        if found:
            return found
    for i in range(n.n_kids):
        found = visit(owner(kids[i]), arg)
        if found:
            return found
    return 0


cdef int value_clear(PyObject *o) noexcept:
    """Break a cycle: every cycle through a Value runs through some Value's attributes
    (kids are older than their parents), so dropping those is enough."""
    cdef PyObject **slot = <PyObject **>(<char *>o + DICT_OFFSET)
    cdef PyObject *attrs = slot[0]
    cdef cg_node *n = <cg_node *>(<char *>o + NODE_OFFSET)
    n.op &= ~CG_OP_PYTHON_BACKWARD
    slot[0] = NULL
    Py_XDECREF(attrs)
    return 0


cdef int set_up_type() except -1:
    """Finish the Value type.  Cython would give each Value an eager __dict__ (a dict per
    node) and, without one, leave the type out of the cyclic GC; so the instance dict is
    the raw `attrs` field, made on first use, and the GC slots are set here, before any
    Value exists."""
    global NODE_OFFSET, DICT_OFFSET, WEAKLIST_OFFSET, PRESIZE, cython_dealloc
    import sys
    cdef TypeSlots *t = <TypeSlots *>Value
    cdef Value probe = Value.__new__(Value)    # allocated and freed before any change
    NODE_OFFSET = <char *>&probe.node - <char *><PyObject *>probe
    DICT_OFFSET = <char *>&probe.attrs - <char *><PyObject *>probe
    WEAKLIST_OFFSET = t.tp_weaklistoffset
    probe = None
    if not (t.tp_flags & Py_TPFLAGS_HAVE_GC):
        t.tp_flags |= Py_TPFLAGS_HAVE_GC
        t.tp_free = PyObject_GC_Del
    t.tp_alloc = value_alloc_untracked
    t.tp_dictoffset = DICT_OFFSET
    t.tp_traverse = <traverseproc>value_traverse
    t.tp_clear = <inquiry>value_clear
    cython_dealloc = t.tp_dealloc
    t.tp_dealloc = value_dealloc
    # micrograd code adds methods to the class (`Value.tanh = tanh`)
    t.tp_flags &= ~Py_TPFLAGS_IMMUTABLETYPE_OR_0
    PyDict_SetItem(<object>t.tp_dict, "__dict__",
                   <object>PyDescr_NewGetSet(<PyTypeObject *>Value, &DICT_GETSET))
    if PY_VERSION_HEX < 0x030A0000:
        Py_INCREF(_ValueClass)
        Py_SET_TYPE(<PyObject *>Value, <PyTypeObject *>_ValueClass)
    PyType_Modified(<PyTypeObject *>Value)
    PRESIZE = sys.getsizeof(Value.__new__(Value)) - t.tp_basicsize
    # Slabs need the GC header to be the usual two words in front of the object.
    if CGRAD_USE_SLABS and PRESIZE == 2 * sizeof(void *) and \
            PRESIZE + t.tp_basicsize == VALUE_BYTES and VALUE_BYTES % 16 == 0 and \
            VALUE_BYTES <= 128 and \
            cg_slab_pool_init(&value_slabs, (VALUE_BYTES + 15) // 16 * 16, 512) == 0:
        value_slabs.on_new = slab_traced
        value_slabs.on_release = slab_untraced
        t.tp_alloc = value_alloc
        t.tp_free = value_free
    return 0


cdef destructor cython_dealloc


cdef void value_dealloc(PyObject *o) noexcept:
    """Out of the GC's lists first (weakref callbacks and releasing attributes may run
    Python code, hence a collection); weak references cleared, then the kids and the
    attributes let go, then Cython's dealloc frees the memory.  Not a __dealloc__:
    Cython wraps one in a save and restore of the current exception, ~8% of building
    and freeing a graph, and nothing here needs it (kids' deallocs raise nothing, and
    finalizers an attribute runs save the exception themselves)."""
    # The usual GC header's first word is non-zero exactly when the object is tracked:
    # read inline, the common untracked case costs no call.
    if PRESIZE != 2 * sizeof(void *) or (<void **>o - 2)[0] != NULL:
        PyObject_GC_UnTrack(o)
    if (<PyObject **>(<char *>o + WEAKLIST_OFFSET))[0] != NULL:
        PyObject_ClearWeakRefs(o)
    forget(<cg_node *>(<char *>o + NODE_OFFSET))
    cdef PyObject **attrs_slot = <PyObject **>(<char *>o + DICT_OFFSET)
    cdef PyObject *attrs = attrs_slot[0]
    attrs_slot[0] = NULL
    Py_XDECREF(attrs)
    cython_dealloc(o)


cdef PyGetSetDef DICT_GETSET
DICT_GETSET.name = "__dict__"
DICT_GETSET.get = dict_get
DICT_GETSET.set = PyObject_GenericSetDict
DICT_GETSET.doc = NULL
DICT_GETSET.closure = NULL


class _ValueClass(type):
    """Python 3.9 only, Value's metaclass: 3.9 refuses new attributes on any type written
    in C, and micrograd code adds methods to Value (`Value.tanh = tanh`).  Later
    Pythons need no metaclass (Value's type is simply left mutable)."""

    def __setattr__(cls, name, value):
        if cls is not Value:
            return type.__setattr__(cls, name, value)
        if name.startswith("__") and name.endswith("__"):
            raise TypeError(f"cannot set {name!r} on Value under Python 3.9 (only 3.10+ "
                            f"updates a C type's special methods); subclass Value instead")
        (<dict>(<TypeSlots *>Value).tp_dict)[name] = value
        PyType_Modified(<PyTypeObject *>Value)

    def __delattr__(cls, name):
        if cls is not Value:
            return type.__delattr__(cls, name)
        del (<dict>(<TypeSlots *>Value).tp_dict)[name]
        PyType_Modified(<PyTypeObject *>Value)


def _trim_slabs():
    """Give the memory of freed Values kept for reuse back to the system (a benchmark
    measuring memory calls it first)."""
    cg_slab_pool_trim(&value_slabs)


def _memory_layout():
    """(bytes per exact Value including the GC header, bytes held in slabs or 0)."""
    return (PRESIZE + (<TypeSlots *>Value).tp_basicsize,
            value_slabs.n_slabs * CG_SLAB_BYTES)


set_up_type()
memset(&dying, 0, sizeof(dying))
memset(&backward_order, 0, sizeof(backward_order))
cg_python_backward = python_backward
