# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Replay: a graph built once over input leaves, re-run in C for new data.

The graph's interior nodes are recorded in the order backward() would sweep them (so
replayed gradients are bit for bit those of a rebuilt graph) and packed into a C plan
(csrc/replay.c); forward and backward run over it with the GIL released.  The Graph
holds a reference to every node the plan touches, so nothing can be freed under it.
"""
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

import math
import os
import sys
import threading
import weakref

import numpy as np

from cgrad.optim import SGD, Adam


from libc.stdint cimport uint32_t

from cgrad._capi cimport *
from cgrad._core cimport (Value, interior_order, free_order, has_repeats,
                          has_python_backward, owner_of, raise_status, sync_nodes,
                          nodes_changed, replay_pending, replay_settled, node_epoch)
from cgrad._core import _set_flush
from cgrad._optim cimport ParameterArray

cdef extern from "layer_kernels.h":
    size_t cg_set_kernel_chunk(size_t terms)
    size_t cg_set_work_per_part(size_t work)
    const char *cg_kernel_path(int exact)

cdef extern from "threads.h":
    double cg_set_caller_spin(double seconds)

cdef extern from "cpu.h":
    """
    #ifndef CG_X86_COPIES
    static int cg_vector_limit = 0;   /* one copy: nothing to limit */
    #endif
    """
    int cg_vector_limit
    enum:
        CG_VECTORS_PORTABLE, CG_VECTORS_AVX2, CG_VECTORS_AVX512

VECTOR_LIMITS = {"portable": CG_VECTORS_PORTABLE, "avx2": CG_VECTORS_AVX2,
                 "avx512": CG_VECTORS_AVX512}


def kernel_path(exact=True):
    """The copy replay's layer kernels run on here, e.g. 'AVX-512 (8 doubles a
    vector)', exact (the default) or with exact=False.  Every exact copy gives the
    same bits."""
    return cg_kernel_path(bool(exact)).decode()


def _limit_vectors(widest):
    """For tests: the widest copies the kernels and Adam may use ('portable', 'avx2' or
    'avx512', the default), to compare the paths this CPU runs; returns the previous."""
    global cg_vector_limit
    names = {code: name for name, code in VECTOR_LIMITS.items()}
    previous = names.get(cg_vector_limit, "portable")
    cg_vector_limit = VECTOR_LIMITS[widest]
    return previous


def _set_work_per_part(size_t work):
    """For tests: the fewest multiply-adds a layer kernel's part gets with threads=N
    (1: every kernel split, as small tests need); returns the previous setting."""
    return cg_set_work_per_part(work)


def _set_caller_spin(double seconds):
    """For tests: how long a job's caller spins for the other threads' parts before it
    sleeps (default 200 us; 0: at once); returns the previous setting."""
    return cg_set_caller_spin(seconds)


def _set_kernel_chunk(size_t terms):
    """For tests: how many terms the layer kernels sum per chunk (default and at most
    1024); returns the previous setting."""
    return cg_set_kernel_chunk(terms)


# Graphs whose plans hold numbers their nodes do not show yet (see Graph's docstring).
cdef set STALE_NODES = set()

# Held while a Graph prepares a run and while plans' numbers are written into nodes; a
# Condition, waited on until the graphs a thread needs are not running elsewhere.  A
# run gives it up for its C work (GIL released too), so Graphs that share no node run
# side by side in threads; a Graph that shares nodes with a running one waits, as does
# anything that reads or writes a node while a graph holding it runs (two Graphs
# sharing parameters would otherwise each add to their own copy of the grads, and one
# would be lost; a node is never written from a plan half-way through a run).
# Re-entrant.  Waiting releases the GIL.
RUN_LOCK = threading.Condition(threading.RLock())


cdef inline bint busy_elsewhere(Graph graph):
    """Whether another thread is running this graph's C work right now."""
    return graph.running and graph.runner != threading.get_ident()


cdef int wait_until_free(list graphs) except -1:
    """With RUN_LOCK held: wait until none of these graphs runs in another thread."""
    cdef Graph graph
    while True:
        for graph in graphs:
            if busy_elsewhere(graph):
                break
        else:
            return 0
        RUN_LOCK.wait()


# Every built Graph, to find which share nodes with a new one.
cdef object LIVE_GRAPHS = weakref.WeakSet()


def flush(Graph keep=None):
    """Write every replayed graph's numbers into its nodes (called by cgrad._core before
    anything reads or writes a node), or, before `keep` runs, those of the graphs that
    share nodes with it (no other graph's numbers matter to it)."""
    flush_graphs(keep, keep is not None)


cdef int flush_graphs(Graph keep, bint only_partners, Graph spare=None) except -1:
    """Hand the numbers of the graphs ahead of their nodes back to the nodes: all but
    `keep` (and `spare`), or only its partners that hold numbers it reads.  The
    "pending" flag in _core is cleared here, under the lock, once no graph is ahead:
    an interrupt while waiting for the lock leaves it set."""
    cdef Graph graph
    cdef list graphs = []
    with RUN_LOCK:
        while True:
            graphs = [graph for graph in STALE_NODES
                      if graph is not keep and graph is not spare
                      and (not only_partners or keep_reads(keep, graph))]
            if not any(busy_elsewhere(graph) for graph in graphs):
                break
            RUN_LOCK.wait()   # a graph holding newer numbers is running: they are not done
        for graph in graphs:
            STALE_NODES.discard(graph)
            if graph.params_given:   # another plan holds the parameters' numbers
                cg_plan_sync_except_params(graph.plan)
            else:
                cg_plan_sync(graph.plan)
            graph.ahead = graph.params_given = False
        if graphs:
            nodes_changed()
        for graph in graphs:   # their plans and nodes agree now
            graph.loaded_epoch = node_epoch()
        if STALE_NODES:
            replay_pending()
        else:
            replay_settled()
    return 0


cdef bint keep_reads(Graph keep, Graph graph) except -1:
    """Whether `keep` may read numbers that `graph` (ahead) holds: it shares a node with
    it, other than parameters it gave away."""
    if graph not in keep.partners:
        return False
    return not graph.params_given or graph.shares_beyond_params(keep)


# Reads of single nodes since a graph last ran: past a budget (a few thousand at a
# million slots, where each read costs ~1-4 us against ~10 ms for handing every number
# back), a read hands every number back, so a loop over all parameters costs one sync.
cdef Py_ssize_t single_reads = 0


def flush_node(Value node):
    """Before Python reads one node's numbers (called by cgrad._core): those of the
    graph that holds newer ones reach that node alone; the graph keeps the others.
    At most one graph ahead holds a node (a run first takes back what its partners hold
    that it reads; a graph that gave its parameters to another holds them no more)."""
    global single_reads
    cdef Graph graph
    cdef Py_ssize_t slots = 0
    with RUN_LOCK:
        while any(busy_elsewhere(graph) for graph in STALE_NODES):
            RUN_LOCK.wait()   # a graph holding newer numbers is running: they are not done
        for graph in STALE_NODES:
            slots += len(graph.held)
        single_reads += 1
        if single_reads > max(64, slots >> 9):
            flush_graphs(None, False)
            return
        for graph in STALE_NODES:   # a graph's given parameters: the holder's
            if (cg_plan_sync_node_except_params(graph.plan, &node.node) if graph.params_given
                    else cg_plan_sync_node(graph.plan, &node.node)):
                return


def _after_fork_in_child():
    """A fork's child has only the thread that forked: a Graph another thread was
    running holds half-computed numbers, and the lock that thread held would never be
    released.  The lock starts afresh; such Graphs are retired (their nodes keep the
    numbers they last received) and refuse to run."""
    global RUN_LOCK
    cdef Graph graph
    RUN_LOCK = threading.Condition(threading.RLock())
    for graph in list(LIVE_GRAPHS):
        if graph.running:
            graph.running = False
            graph.broken = True
            graph.ahead = graph.params_given = False
            STALE_NODES.discard(graph)
    if not STALE_NODES:
        replay_settled()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_set_flush(flush, flush_node)


def batch_template(Graph two not None, loss, tuple inputs, outputs=None):
    """BatchTemplate(two, Graph(loss, inputs=inputs, outputs=outputs)) without making
    that Graph: the three-example step is recorded only to be compared (cgrad.compile,
    dynamic=True)."""
    cdef BatchTemplate template = BatchTemplate.__new__(BatchTemplate)
    if loss is not None and not isinstance(loss, Value):
        raise TypeError(f"the loss must be a Value (or None), not {type(loss).__name__}")
    cdef list flat = []
    for i, group in enumerate(inputs):
        flat += flatten(group, f"input {i}")[0]
    out_values, out_shape = flatten([] if outputs is None else outputs, "outputs")
    template.read(two)
    if <size_t>len(flat) != 3 * template.per_example \
            or out_shape[1:] != template.out_rest and out_values:
        raise ValueError(f"the three-example step's inputs or outputs are not the "
                         f"two-example step's with one more example")
    cdef NodeArray queries = from_values(flat + out_values)
    cdef uint32_t *slots = <uint32_t *>malloc((queries.size + 1) * sizeof(uint32_t))
    if slots == NULL:
        raise MemoryError()
    cdef cg_plan *three = NULL
    try:
        three = record(([] if loss is None else [loss]) + out_values, loss is not None,
                       queries, slots, False)
        template.check(three, slots, slots + len(flat))
    finally:
        cg_plan_free(three)
        free(slots)
    return template


def _rebuild_template(Graph two):
    """An unpickled template: it was checked when first made."""
    cdef BatchTemplate template = BatchTemplate.__new__(BatchTemplate)
    template.read(two)
    return template


def _rebuild_tiled(Graph two, batch):
    return _rebuild_template(two).graph(batch)


def _rebuild_graph(cls, loss, inputs, outputs, input_grads, threads, exact):
    return cls(loss, inputs=inputs, outputs=outputs, input_grads=input_grads,
               threads=threads, exact=exact)


def inputs(*shape):
    """Fresh leaves standing for one batch of data: nested lists of Value(0.0).

    ``inputs(32, 64)`` is 32 lists of 64 leaves, ``inputs(3)`` a list of 3."""
    for size in shape:
        if not isinstance(size, int):
            raise TypeError(f"inputs() takes int sizes, got {shape!r}")
        if size < 0:
            raise ValueError(f"inputs() takes sizes >= 0, got {shape!r}")
    if not shape:
        return Value(0.0)
    count = math.prod(shape)
    if count > leaves_that_fit():
        raise MemoryError(f"inputs{shape!r} would make {count:,} leaves of ~{LEAF_BYTES} "
                          f"bytes each, more than this machine's memory")
    # not leaves_holding(np.zeros(shape)): numpy stops at 64 axes
    return nest(new_leaves(count, NULL), shape)


cdef list new_leaves(Py_ssize_t count, const double *data):
    """count fresh leaves holding data[i] (0.0 without data): zeroed nodes, made
    without an __init__ call."""
    cdef list items = []
    cdef Value v
    cdef Py_ssize_t i
    for i in range(count):
        v = Value.__new__(Value)
        if data != NULL:
            v.node.data = data[i]
        items.append(v)
    return items


def leaves_holding(array):
    """Fresh leaves shaped like ``array`` (as :func:`inputs` makes them), each holding
    its number: what ``cgrad.compile`` traces ``fn`` over, so that building the graph
    meets the numbers the step will (a log or a division of an input is defined there,
    where it may not be at 0)."""
    cdef double[::1] flat = np.ascontiguousarray(array, dtype=np.float64).reshape(-1)
    shape = np.shape(array)
    if not shape:
        return Value(flat[0])
    return nest(new_leaves(flat.shape[0], &flat[0] if flat.shape[0] else NULL),
                tuple(shape))


def real_array(i, array):
    """Input i as a numpy array of real numbers, or an error saying what it is."""
    try:
        data = np.asarray(array)
    except ValueError as error:  # e.g. ragged rows
        raise ValueError(f"input {i}: {error}") from None
    if data.dtype.kind not in "biuf":
        if data.dtype == object and any(isinstance(v, Value) for v in data.flat):
            raise TypeError(f"input {i} holds Values: step() and forward() take "
                            f"the numbers to load into the input leaves (a numpy "
                            f"array), not the leaves themselves")
        raise TypeError(f"input {i} must be an array of real numbers, "
                        f"got {type(array).__name__} of dtype {data.dtype}")
    return data


LEAF_BYTES = 104   # a Value with its node (96 bytes) and its place in a list


def leaves_that_fit():
    """How many input leaves this machine's memory could hold (no limit where it cannot
    be read): a size past it fails at once instead of filling memory first."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // LEAF_BYTES
    except (AttributeError, ValueError, OSError):
        return sys.maxsize


cdef object nest(list items, tuple shape):
    """items (row-major) as nested lists of that shape; shape () is the one item."""
    if not shape:
        return items[0]
    cdef Py_ssize_t groups, n, g, k
    for k in range(len(shape) - 1, 0, -1):  # group the innermost level first
        n = shape[k]
        groups = 1
        for g in range(k):
            groups *= shape[g]
        items = rows_of(items, groups, n)
    return items


cdef list rows_of(list items, Py_ssize_t groups, Py_ssize_t n):
    cdef list rows = []
    cdef Py_ssize_t g
    for g in range(groups):
        rows.append(items[g * n:(g + 1) * n])
    return rows


MAX_DIMS = 64   # numpy's limit: data for deeper inputs could not be given


def flatten(obj, what):
    """(the Values of a nested list, in row-major order; its shape).

    Level by level, not recursively: a list nested 100,000 deep gets an answer, not a
    stack overflow."""
    cdef list level = [obj], below
    shape = []
    while True:
        n_values = 0
        for item in level:
            n_values += isinstance(item, Value)
        if n_values == len(level):
            return level, tuple(shape)
        if n_values:
            raise ValueError(f"{what} is ragged: it mixes Values and lists at depth "
                             f"{len(shape)}")
        below, lengths = [], set()
        for item in level:
            if isinstance(item, np.ndarray) and item.dtype == object:
                item = item.tolist()
            if not isinstance(item, (list, tuple)):
                raise TypeError(f"{what} must be a Value or nested lists of Values, "
                                f"not {type(item).__name__}")
            lengths.add(len(item))
            below.extend(item)
        if len(lengths) > 1:
            raise ValueError(f"{what} is ragged: at depth {len(shape)} its lists have "
                             f"lengths {sorted(lengths)}")
        shape.append(lengths.pop())
        if len(shape) > MAX_DIMS:
            raise ValueError(f"{what} is nested deeper than {MAX_DIMS} levels, more than a "
                             f"numpy array has dimensions")
        if not below:  # empty lists all the way down from here
            return below, tuple(shape)
        level = below


cdef class NodeArray:
    """A C array of nodes, holding a reference to each node's Value."""
    cdef cg_node **nodes
    cdef readonly Py_ssize_t size
    cdef list values

    def __dealloc__(self):
        free(self.nodes)


cdef NodeArray from_values(list values):
    cdef NodeArray array = NodeArray.__new__(NodeArray)
    array.nodes = <cg_node **>malloc(max(len(values), 1) * sizeof(cg_node *))
    if array.nodes == NULL:
        raise MemoryError()
    array.size = len(values)
    array.values = values
    for i in range(array.size):
        array.nodes[i] = &(<Value>values[i]).node
    return array


cdef cg_plan *record(list roots, bint with_loss, NodeArray queries,
                     uint32_t *query_slots, bint find_layers=True) except NULL:
    """Plan the interior nodes the roots depend on (with_loss: roots[0] is the loss);
    query_slots receives each query node's slot (-1: not in the plan).  Without
    find_layers: only the steps, to compare with another plan."""
    cdef NodeArray root_array = from_values(roots)
    cdef cg_vec order
    cdef size_t n_first = 0
    cdef int failed
    cdef cg_plan *plan = NULL
    memset(&order, 0, sizeof(order))
    # Under the GIL: the traversal and the planning write visit marks into the nodes,
    # and two threads recording graphs that share nodes would garble each other's.
    failed = interior_order(root_array.nodes, root_array.size, &order, &n_first)
    try:
        if not failed and refuse_python_nodes(<cg_node **>order.items, order.len):
            free_order(&order)   # leaves only guessed to have a _backward: again without
            failed = interior_order(root_array.nodes, root_array.size, &order, &n_first)
        if not failed:
            plan = cg_plan_new(<cg_node **>order.items, order.len,
                               n_first if with_loss else 0, queries.nodes, queries.size,
                               query_slots, find_layers)
    finally:
        free_order(&order)
    if plan == NULL:
        raise MemoryError("out of memory while recording the graph")
    return plan


cdef int refuse_python_nodes(cg_node **nodes, size_t n) except -1:
    """A plan runs in C without the GIL and recomputes every node from its leaves: a
    node whose chain rule is Python code (a `_backward` assigned to it) cannot be part
    of one, nor one whose local gradients are numbers fixed when it was built (microgpt's
    `Value(data, children, local_grads)`).  Returns 1 if the order held a leaf only
    guessed to have a `_backward` (its __dict__ was handed out; see _core.dict_get): its
    flag is cleared, and the order must be taken again."""
    cdef size_t i
    cdef int retake = 0
    for i in range(n):
        if nodes[i].n_kids == 0 and not has_python_backward(nodes[i]):
            retake = 1
            continue
        if has_python_backward(nodes[i]):
            v = owner_of(nodes[i])
            raise TypeError(
                f"cannot replay a graph containing a node with a Python _backward "
                f"({v!r}, op {v._op!r}): replay runs in C.  Build the op from cgrad's "
                f"ops (or cgrad.dot/sum/logsumexp), or call loss.backward() eagerly")
        if cg_base_op(nodes[i]) == CG_LOCAL:
            v = owner_of(nodes[i])
            raise TypeError(
                f"cannot replay a graph containing a node built as Value(data, "
                f"children, local_grads) ({v!r}): its data and local gradients are "
                f"numbers fixed when it was built, and replay recomputes every node "
                f"from its leaves.  Build the op from cgrad's ops (v.tanh(), v.exp(), "
                f"...), or call loss.backward() eagerly")
    return retake


cdef bint a_bool(value, str name) except -1:
    """A flag given as True/False (or 0/1, numpy's bools); anything else is a mistake."""
    if not isinstance(value, (bool, int, np.bool_)) or value not in (True, False):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return bool(value)


def default_threads():
    """The cores this process may run on (at most 8): Graph's default threads.  Only
    kernels big enough to pay for the hand-off are split (1.5M multiply-adds a part), so
    small models run on one thread whatever this is."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8, CG_MAX_THREADS))


cdef class BatchTemplate


cdef class Graph:
    """A training step (or any computation) recorded once and replayed in C.

    Build the graph as usual over leaves from :func:`inputs`, then::

        graph = Graph(loss, inputs=(xs, ys), outputs=scores)
        for xb, yb in batches:
            loss = graph.step(xb, yb, optimizer=optimizer)

    ``loss`` is the scalar Value to differentiate (None for a graph that only computes
    ``outputs``).  Input leaves' grads (``input_grads=True``, the default) hold each
    batch's input gradients, bit for bit as backward() over the rebuilt graph gives
    them; a first layer computes them only when Python next looks at a node of the
    graph (a third of its work, which a training loop that never reads them does not
    pay).  ``input_grads=False`` leaves them at 0 (as PyTorch does for inputs that do
    not require grad).  ``threads=N`` splits each layer's matrix-matrix kernels, the
    passes around them and the optimizer's step over N threads (each number computed by
    one of them, in the same order: the same bits as one thread) when the work is big
    enough to pay for it (1.5M multiply-adds a part); the loss's scalar steps run on one.
    The default (None) is the cores the process may use, at most 8.  ``exact=False``
    lets the layer kernels fuse each multiply-add (FMA, where the CPU has it): faster on
    CPUs whose FMA units outrun separate multiplies and adds (Intel's), and no longer
    bit for bit eager's (each term rounds once instead of twice; results agree to
    ~1e-14 relative per step, and training runs drift apart as any two float orders
    do).  ``inputs`` is one nested list of leaves, or a tuple of them, each filled from
    a numpy array of the same shape on every call.  ``outputs`` (a Value or nested
    lists of them) are read back as an array by :meth:`outputs`.

    Replay recomputes every node from the current data of its leaves (parameters
    included) with the op it was built with: which ReLUs are active is decided anew each
    time.  Numbers fixed at build time stay fixed: constants, and which nodes exist.
    """
    cdef cg_plan *plan
    cdef list held                # every node the plan touches, kept alive by the Graph
                                  # (not only through the loss: a Value given __init__
                                  # again lets go of its old kids, which the plan reads)
    cdef NodeArray input_nodes
    cdef NodeArray output_nodes
    cdef readonly object loss
    cdef readonly tuple input_shapes
    cdef object output_shape
    cdef bint running
    cdef object runner            # the thread running it (threading.get_ident())
    cdef bint broken              # was running in another thread when the process forked
    cdef uint32_t *input_slots    # where each input leaf sits in the plan
    cdef uint32_t *input_runs     # runs of consecutive input slots: (first, count) pairs
    cdef size_t *input_runs_end   # input array i's runs end at input_runs_end[i]
    cdef uint32_t *output_slots   # where each output sits in the plan (-1: not in it)
    cdef NodeArray stray_inputs   # input leaves the plan does not touch (filled as nodes)
    cdef bint loaded              # the plan has read its nodes at loaded_epoch
    cdef unsigned long loaded_epoch
    cdef bint ahead               # the plan holds numbers its nodes do not show yet
    cdef bint params_given        # ahead, but its optimizer's parameters are held by
                                  # another graph's plan (taken plan to plan): its own
                                  # copies of them are behind
    cdef object beyond_params     # {partner: whether this plan shares a node with it
                                  # other than its optimizer's parameters}, as found
    cdef ParameterArray optimizer_params   # the optimizer whose parameters are in
    cdef uint32_t *optimizer_slots         # the plan, and their slots
    cdef uint32_t *optimizer_runs          # those slots as runs (cg_slot_runs)
    cdef size_t n_optimizer_runs
    cdef ParameterArray eager_optimizer_params   # one whose update runs on the nodes
    cdef object partners          # the Graphs whose plans touch some of the same nodes
    cdef tuple made_with          # (inputs given as a tuple of groups, input_grads,
                                  # threads as given, exact): what pickling rebuilds it from
    cdef BatchTemplate tiled_from # a Graph copied for a batch size from a template
    cdef object __weakref__

    def __init__(self, loss=None, *, inputs=(), outputs=None, input_grads=True,
                 threads=None, exact=True):
        if self.plan != NULL or self.loss is not None:
            raise RuntimeError("a Graph is built once: make a new Graph instead")
        exact = a_bool(exact, "exact")
        input_grads = a_bool(input_grads, "input_grads")
        self.made_with = (type(inputs) is tuple, bool(input_grads), threads, exact)
        if threads is None:
            threads = default_threads()
        if type(threads) is not int:
            raise TypeError(f"threads must be an int, not {type(threads).__name__}")
        if not 1 <= threads <= CG_MAX_THREADS:
            raise ValueError(f"threads must be from 1 to {CG_MAX_THREADS}, got {threads}")
        try:
            self.build(loss, inputs, outputs, input_grads)
            if cg_plan_set_threads(self.plan, threads) < 0:
                raise MemoryError()
            cg_plan_set_exact(self.plan, exact)
        except BaseException:
            cg_plan_free(self.plan)   # a half-built Graph is an unbuilt one
            self.plan = NULL
            raise

    cdef int build(self, loss, inputs, outputs, bint input_grads) except -1:
        if loss is not None and not isinstance(loss, Value):
            raise TypeError(f"the loss must be a Value (or None), not {type(loss).__name__}")
        self.loss = loss
        groups = inputs if type(inputs) is tuple else (inputs,)
        flat, shapes = [], []
        for i, group in enumerate(groups):
            try:
                values, shape = flatten(group, f"input {i}")
            except ValueError as error:
                if type(inputs) is list and "ragged" in str(error):
                    raise ValueError(f"{error}.  Several inputs go in a tuple: "
                                     f"inputs=(xs, ys)") from None
                raise
            flat = flat + values  # not +=: CPython 3.11 leaks a reference when it fails
            shapes.append(shape)
        for v in flat:
            if (<Value>v).node.n_kids != 0 or cg_base_op(&(<Value>v).node) != CG_LEAF:
                raise ValueError(f"inputs must be leaves (Values not computed from others), "
                                 f"got {v!r} made by {v._op!r}")
        self.input_shapes = tuple(shapes)
        self.input_nodes = from_values(flat)
        if has_repeats(self.input_nodes.nodes, self.input_nodes.size):
            raise ValueError("the same Value appears twice among the inputs")
        out_values, self.output_shape = flatten([] if outputs is None else outputs, "outputs")
        self.output_nodes = from_values(out_values)
        self.input_slots = <uint32_t *>malloc(max(self.input_nodes.size, 1) * sizeof(uint32_t))
        self.output_slots = <uint32_t *>malloc(max(self.output_nodes.size, 1) * sizeof(uint32_t))
        if self.input_slots == NULL or self.output_slots == NULL:
            raise MemoryError()
        cdef NodeArray queries = from_values(flat + out_values)   # inputs, then outputs
        cdef uint32_t *query_slots = <uint32_t *>malloc(max(queries.size, 1) * sizeof(uint32_t))
        if query_slots == NULL:
            raise MemoryError()
        try:
            self.plan = record(([] if loss is None else [loss]) + out_values,
                               loss is not None, queries, query_slots)
            memcpy(self.input_slots, query_slots, self.input_nodes.size * sizeof(uint32_t))
            memcpy(self.output_slots, query_slots + self.input_nodes.size,
                   self.output_nodes.size * sizeof(uint32_t))
        finally:
            free(query_slots)
        cdef cg_node **slot_nodes
        cdef size_t n_slots = cg_plan_slots(self.plan, &slot_nodes)
        cdef list slot_values = []
        cdef size_t k
        for k in range(n_slots):
            slot_values.append(owner_of(slot_nodes[k]))
        self.held = slot_values
        cdef list stray = []
        for k in range(<size_t>self.input_nodes.size):
            if self.input_slots[k] == <uint32_t>-1:
                stray.append(flat[k])
        cdef size_t start = 0, size, j
        for i, shape in enumerate(self.input_shapes):   # a whole input nothing reads
            size = math.prod(shape)
            for j in range(start, start + size):
                if self.input_slots[j] != <uint32_t>-1 or flat[j] is loss \
                        or self.output_slots_hold(flat[j]):
                    break
            else:
                if size:
                    what = "the loss" if loss is not None else "the outputs"
                    raise ValueError(
                        f"input {i} (shape {shape}) is not read by {what}: no node the "
                        f"graph computes depends on its leaves.  Pass the leaves the "
                        f"model was called on")
            start += size
        self.stray_inputs = from_values(stray)
        cdef int made
        if input_grads:   # computed when looked at (the bits backward would give)
            made = cg_plan_defer_input_grads(self.plan, self.input_slots, self.input_nodes.size)
        else:             # left at 0
            made = cg_plan_skip_grads(self.plan, self.input_slots, self.input_nodes.size)
        if made < 0:
            raise MemoryError()
        self.find_input_runs()
        self.partners = weakref.WeakSet()
        self.find_partners()
        LIVE_GRAPHS.add(self)
        return 0

    cdef int tile(self, BatchTemplate template, size_t batch) except -1:
        """Made from a template for `batch` examples (BatchTemplate.graph)."""
        cdef Graph two = template.two
        cdef size_t n_inputs = 0, g, n_groups = len(template.rest)
        for g in range(n_groups):
            n_inputs += batch * template.widths[g]
        cdef size_t n_outputs = batch * template.per_output
        self.input_slots = <uint32_t *>malloc((n_inputs + 1) * sizeof(uint32_t))
        self.output_slots = <uint32_t *>malloc((n_outputs + 1) * sizeof(uint32_t))
        if self.input_slots == NULL or self.output_slots == NULL:
            raise MemoryError()
        with nogil:
            self.plan = cg_tiling_plan(template.tiling, batch, self.input_slots,
                                       self.output_slots, 1)
        if self.plan == NULL:
            raise MemoryError(f"out of memory while copying the step for {batch} examples")
        threads, exact = two.made_with[2:]
        self.made_with = two.made_with
        self.tiled_from = template
        self.loss = two.loss
        self.held = []
        self.input_shapes = tuple((batch,) + rest for rest in template.rest)
        self.input_nodes = from_values([])
        self.output_nodes = from_values([])
        self.output_shape = (batch,) + template.out_rest if n_outputs else (0,)
        self.stray_inputs = from_values([])
        if cg_plan_skip_grads(self.plan, self.input_slots, n_inputs) < 0 \
                or cg_plan_set_threads(self.plan, default_threads() if threads is None
                                       else threads) < 0:
            raise MemoryError()
        cg_plan_set_exact(self.plan, exact)
        self.find_input_runs()
        self.partners = weakref.WeakSet()
        self.find_partners()
        LIVE_GRAPHS.add(self)
        return 0

    cdef int find_input_runs(self) except -1:
        """The runs of consecutive slots each input array loads into (found once, not on
        every load)."""
        cdef size_t n_arrays = len(self.input_shapes), a, n, offset = 0, count = 0
        cdef size_t n_inputs = sum(math.prod(shape) for shape in self.input_shapes)
        self.input_runs = <uint32_t *>malloc((2 * n_inputs + 1) * sizeof(uint32_t))
        self.input_runs_end = <size_t *>malloc((n_arrays + 1) * sizeof(size_t))
        if self.input_runs == NULL or self.input_runs_end == NULL:
            raise MemoryError()
        for a in range(n_arrays):
            n = math.prod(self.input_shapes[a])
            count += cg_slot_runs(self.input_slots + offset, n, self.input_runs + 2 * count)
            self.input_runs_end[a] = count
            offset += n
        return 0

    cdef int find_partners(self) except -1:
        """Pair this Graph with every live one whose plan touches a node of its plan."""
        cdef Graph other
        for other in list(LIVE_GRAPHS):
            if other is not self and cg_plans_share_nodes(self.plan, other.plan):
                self.partners.add(other)
                other.partners.add(self)
        return 0

    def __reduce__(self):
        """Its graph (the loss, inputs and outputs, as Values) and how it was made: it is
        recorded again where it is unpickled (threads=None: that machine's cores).  A
        Graph copied from a BatchTemplate: the template and the batch size."""
        if self.plan == NULL:
            raise TypeError("an unbuilt Graph cannot be pickled")
        if self.tiled_from is not None:
            return (_rebuild_tiled, (self.tiled_from.two, self.input_shapes[0][0]))
        grouped, input_grads, threads, exact = self.made_with
        groups, start = [], 0
        for shape in self.input_shapes:
            size = math.prod(shape)
            groups.append(nest(self.input_nodes.values[start:start + size], shape))
            start += size
        outputs = (None if self.output_nodes.size == 0 and self.output_shape == (0,)
                   else nest(self.output_nodes.values, self.output_shape))
        return (_rebuild_graph, (type(self), self.loss, tuple(groups) if grouped else groups[0],
                                 outputs, input_grads, threads, exact))

    def __dealloc__(self):
        cg_plan_free(self.plan)
        free(self.input_slots)
        free(self.input_runs)
        free(self.input_runs_end)
        free(self.output_slots)
        free(self.optimizer_slots)
        free(self.optimizer_runs)

    cdef int ready(self) except -1:
        if self.plan == NULL:
            raise RuntimeError("this Graph was never built: make one with "
                               "cgrad.Graph(loss, inputs=..., outputs=...)")
        return 0

    @property
    def n_nodes(self):
        """How many nodes the graph holds (leaves included)."""
        self.ready()
        cdef cg_node **nodes
        return cg_plan_slots(self.plan, &nodes)

    @property
    def n_layers(self):
        """How many layers replay runs for the whole batch at once (matrix-matrix): the
        dot products of nn.Layer calls over a batch of input rows."""
        self.ready()
        return cg_plan_layer_count(self.plan)

    def _deferred_input_layers(self):
        """How many layers compute their input gradients only when looked at (tests)."""
        self.ready()
        return cg_plan_deferring_layers(self.plan)

    def _pending_input_layers(self):
        """How many layers' input gradients the last backward left for later (tests)."""
        self.ready()
        return cg_plan_pending_input_layers(self.plan)

    def _fused_loss_rows(self):
        """How many cross-entropy rows of the loss run as one step each (tests)."""
        self.ready()
        return cg_plan_loss_row_count(self.plan)

    def __repr__(self):
        if self.plan == NULL:
            return "Graph(not built)"
        loss = "no loss" if self.loss is None else "a loss"
        return (f"Graph({self.n_nodes} nodes, inputs of shape "
                f"{', '.join(map(str, self.input_shapes)) or 'none'}, {loss}, "
                f"outputs of shape {self.output_shape})")

    # -- running --

    def forward(self, *arrays):
        """Load the arrays into the input leaves and recompute every node.

        Returns the loss, or for a graph without one, ``outputs()``."""
        self.ready()
        cdef list batch = self.convert(arrays)   # before the nodes are read (see begin)
        with RUN_LOCK:
            self.begin(True)
            self.load(batch)
            self.run(True, False)
            return self.outputs() if self.loss is None else self.loss_value()

    def backward(self):
        """``loss.backward()`` over the recorded order: interior grads restart from zero,
        leaf grads accumulate."""
        self.ready()
        self.need_loss("backward()")
        with RUN_LOCK:
            self.begin(False)
            self.run(False, True)

    def step(self, *arrays, optimizer):
        """One training step: ``optimizer.zero_grad()``, forward, backward,
        ``optimizer.step()``.  Returns the loss (computed before the update).

        With cgrad's SGD or Adam over parameters of this graph, the update runs in the
        plan too, on its own copy of the parameters: no node is touched until Python
        looks at one.  Parameters of the optimizer the graph does not read join the
        plan as well, updated with gradient 0 (as zero_grad, backward and step update
        them on the nodes)."""
        self.ready()
        self.need_loss("step()")
        if isinstance(optimizer, type):
            raise TypeError(f"step() needs an optimizer, not the class {optimizer.__name__}: "
                            f"make one, e.g. optimizer={optimizer.__name__}"
                            f"(model.parameters(), lr=0.01)")
        if not (hasattr(optimizer, "zero_grad") and hasattr(optimizer, "step")):
            raise TypeError(f"step() needs an optimizer with zero_grad() and step() "
                            f"(cgrad.optim.SGD or Adam), got {type(optimizer).__name__}")
        cdef list batch = self.convert(arrays)   # checked before anything changes
        with RUN_LOCK:
            return self.step_locked(batch, optimizer)

    cdef object step_locked(self, list batch, optimizer):
        wait_until_free([self] + list(self.partners))   # holds() may change the plan
        if not self.holds(optimizer):
            optimizer.zero_grad()
            self.begin(True)
            self.load(batch)
            self.run(True, True)
            loss = self.loss_value()
            optimizer.step()
            return loss
        hyper = optimizer.hyperparameters()  # checked before anything changes
        self.begin(True, True)
        self.load(batch)
        cdef ParameterArray params = self.optimizer_params
        cdef cg_update update
        update.kind = CG_UPDATE_SGD if type(optimizer) is SGD else CG_UPDATE_ADAM
        update.lr, update.h1, update.h2 = hyper[0], hyper[1], hyper[2]
        update.h3 = update.h4 = 0.0
        update.step = 0
        if update.kind == CG_UPDATE_ADAM:
            update.h3, update.h4 = hyper[3], hyper[4]
            update.step = optimizer.steps + 1
        update.state = params.state
        update.next = params.next_state
        update.new_data = params.new_data
        update.n = params.size
        update.slots = self.optimizer_slots
        cdef long broken = self.run(True, True, &update)
        if broken < 0:
            params.took_next_state()
        loss = self.loss_value()
        if broken >= 0:
            raise OverflowError(
                f"{type(optimizer).__name__} step refused: parameter {broken} "
                f"({params.values[broken]!r}) would become inf or nan (lr={hyper[0]!r}); "
                f"nothing was updated.  Lower the learning rate or momentum.")
        if update.kind == CG_UPDATE_ADAM:
            optimizer.steps += 1   # only once the update went through
        return loss

    def outputs(self):
        """The outputs' current data, as an array shaped like the outputs."""
        self.ready()
        cdef Py_ssize_t tiled_outputs = (0 if self.tiled_from is None
                                         else math.prod(self.output_shape))
        out = np.empty(self.output_nodes.size or tiled_outputs, dtype=np.float64)
        cdef double[::1] view = out
        cdef double *val
        cdef double *grad
        cdef Py_ssize_t i
        with RUN_LOCK:          # no other thread's run between the sync and the read
            wait_until_free([self])
            if self.tiled_from is not None:   # computed by its last run, in its plan
                cg_plan_arrays(self.plan, &val, &grad)
                for i in range(tiled_outputs):
                    view[i] = val[self.output_slots[i]]
                return out.reshape(self.output_shape)
            if self.params_given:   # its parameters are in another plan: all to nodes
                flush_graphs(None, False)
            flush(self)         # a graph sharing nodes may hold newer numbers
            if self.output_nodes.size:
                cg_gather(self.output_nodes.nodes, self.output_nodes.size, &view[0])
            if self.ahead:      # this plan's numbers are newer than its nodes'
                cg_plan_arrays(self.plan, &val, &grad)
                for i in range(self.output_nodes.size):
                    if self.output_slots[i] != <uint32_t>-1:
                        view[i] = val[self.output_slots[i]]
        return out.reshape(self.output_shape)

    # -- internals --

    cdef bint output_slots_hold(self, v):
        cdef Py_ssize_t i
        for i in range(self.output_nodes.size):
            if self.output_nodes.nodes[i] == &(<Value>v).node:
                return True
        return False

    cdef int need_loss(self, str what) except -1:
        if self.loss is None:
            raise TypeError(f"{what} needs a loss: this Graph was made without one")
        return 0

    cdef double loss_value(self):
        if (<Value>self.loss).node.n_kids == 0:  # a leaf loss: no step computes it
            return (<Value>self.loss).node.data
        return cg_plan_root_value(self.plan)

    cdef bint holds(self, optimizer) except -1:
        """Whether optimizer is cgrad's SGD or Adam over leaves (then it runs in the
        plan); finds their slots once per optimizer.  Parameters the graph does not
        read (microgpt's position embeddings past a short document) become leaves of
        the plan that no step reads, updated with gradient 0 as on the nodes.  An
        optimizer none of whose parameters this graph uses is refused: it would train
        nothing the loss depends on.  The caller holds RUN_LOCK, and this graph runs
        nowhere else."""
        if type(optimizer) is not SGD and type(optimizer) is not Adam:
            return False
        array = optimizer.params
        if type(array) is not ParameterArray or \
                (<ParameterArray>array).n_state < (1 if type(optimizer) is SGD else 2):
            raise TypeError(f"this {type(optimizer).__name__}'s parameters were replaced "
                            f"(its .params is {type(array).__name__}): make a new "
                            f"optimizer over model.parameters()")
        cdef ParameterArray params = array
        if params is self.optimizer_params:
            return True
        if params is self.eager_optimizer_params:
            return False
        cdef uint32_t *slots = <uint32_t *>malloc(max(params.size, 1) * sizeof(uint32_t))
        if slots == NULL:
            raise MemoryError()
        cg_plan_find_slots(self.plan, params.nodes, params.size, slots)
        cdef Py_ssize_t i, missing = 0, computed = 0
        for i in range(params.size):
            if params.nodes[i].n_kids != 0:
                computed += 1
            elif slots[i] == <uint32_t>-1:
                missing += 1
        if 0 < computed + missing == params.size:
            free(slots)
            raise ValueError(
                f"none of the optimizer's {params.size} parameters is in this Graph (the "
                f"first: {params.values[0]!r}): the loss it recorded does not depend on "
                f"them, and the step would train nothing.  If the model changed since "
                f"the Graph was built, build it again; else give the optimizer the "
                f"parameters of the model the loss was built from")
        if computed:        # a parameter computed from others: the update runs on nodes
            free(slots)
            self.eager_optimizer_params = params
            return False
        if missing:
            try:
                self.add_leaves(params, slots)
            except BaseException:
                free(slots)
                raise
        cdef uint32_t *runs = <uint32_t *>malloc((2 * params.size + 1) * sizeof(uint32_t))
        if runs == NULL:
            free(slots)
            raise MemoryError()
        flush_graphs(None, False)   # no plan holds parameters for the old binding
        free(self.optimizer_slots)
        free(self.optimizer_runs)
        self.optimizer_slots = slots
        self.optimizer_runs = runs
        self.n_optimizer_runs = cg_slot_runs(slots, params.size, runs)
        self.optimizer_params = None
        self.forget_sharing()
        if cg_plan_mark_params(self.plan, slots, params.size) < 0:
            raise MemoryError()
        self.optimizer_params = params
        return True

    cdef int add_leaves(self, ParameterArray params, uint32_t *slots) except -1:
        """Make the parameters the plan does not touch (slots -1) leaves of it."""
        flush_graphs(None, False)   # their nodes may be behind another graph's numbers
        cdef cg_node **nodes
        cdef uint32_t first_new = cg_plan_slots(self.plan, &nodes)   # new slots follow,
        if cg_plan_add_leaves(self.plan, params.nodes, params.size, slots) < 0:  # in order
            raise MemoryError()
        cdef Py_ssize_t i
        for i in range(params.size):
            if slots[i] >= first_new:
                self.held.append(params.values[i])
        self.forget_sharing()
        self.find_partners()   # it may share nodes with more graphs now
        return 0

    cdef int begin(self, bint forward, bint take_params=False) except -1:
        """Before a run (the caller holds RUN_LOCK): other graphs' numbers reach their
        nodes, and this plan reads its nodes again if anything wrote to them since it
        last did (the leaves only, for a run that starts with forward: it recomputes
        the rest).  With `take_params` (a step whose optimizer is bound to this plan), or
        if this plan gave its parameters away: the graph ahead that holds them, bound to the
        same optimizer, hands them over plan to plan and keeps the rest of its numbers
        (a loop over graphs of one model, such as cgrad.compile's per document length,
        then never writes the parameters to their nodes nor reads them back)."""
        if self.broken:
            raise RuntimeError("this Graph was running in another thread when the "
                               "process forked: its numbers are incomplete here.  Build "
                               "it again in this process")
        global single_reads
        wait_until_free([self] + list(self.partners))   # not running elsewhere, nor
        cdef Graph holder = None
        if self.params_given or (take_params and not self.ahead):
            holder = self.param_holder()
            if holder is not None and holder.shares_beyond_params(self):
                holder = None       # it holds more this plan reads: all back to the nodes
        # its partners' numbers it reads reach the nodes, but the holder's: Python code
        # runs (an interrupt may strike) only up to here, before anything changes hands
        flush_graphs(self, True, holder)
        single_reads = 0            # this run's numbers are new: a fresh budget of reads
        if holder is not None:
            holder.params_given = True   # it keeps the rest of its numbers
        if self.ahead:              # nothing wrote to a node since this plan last ran
            if self.params_given:   # but its parameters are elsewhere
                if holder is not None:
                    self.take_params(holder, take_params)
                else:               # handed back to their nodes meanwhile
                    cg_plan_reload_params(self.plan, self.optimizer_slots,
                                          self.optimizer_params.size)
                self.params_given = False
            return 0
        if not self.loaded or self.loaded_epoch != node_epoch():
            if holder is not None:
                cg_plan_reload_except_params(self.plan, not forward)
            else:
                cg_plan_reload(self.plan, not forward)
            self.loaded = True
            self.loaded_epoch = node_epoch()
        if holder is not None:      # the parameters' nodes are behind: this plan holds them
            self.take_params(holder, take_params)
        # From here the plan owns its numbers: anything that reads or writes one of its
        # nodes waits for the lock and takes them back first (_core.sync_nodes).
        self.ahead = True
        STALE_NODES.add(self)
        replay_pending()
        return 0

    cdef int take_params(self, Graph holder, bint for_step) except -1:
        """The parameters' data from holder's plan, and their grads, or 0 for a step
        (which starts with zero_grad())."""
        cg_plan_take_params(self.plan, self.optimizer_slots, holder.plan,
                            holder.optimizer_slots, self.optimizer_params.size, for_step)
        return 0

    cdef Graph param_holder(self):
        """The graph ahead of its nodes that holds the parameters of this plan's
        optimizer and is bound to it too, if any (at most one holds a node)."""
        cdef Graph graph
        for graph in STALE_NODES:
            if graph is not self and graph.optimizer_params is self.optimizer_params \
                    and not graph.params_given and graph in self.partners:
                return graph
        return None

    cdef bint shares_beyond_params(self, Graph other) except -1:
        """Whether this plan shares a node with other's besides its optimizer's
        parameters (found once per pair, until either binds or gains leaves)."""
        if self.beyond_params is None:
            self.beyond_params = weakref.WeakKeyDictionary()
        found = self.beyond_params.get(other)
        if found is None:
            found = bool(cg_plans_share_nodes_beyond_params(self.plan, other.plan))
            self.beyond_params[other] = found
        return found

    cdef int forget_sharing(self) except -1:
        cdef Graph partner
        self.beyond_params = None
        for partner in list(self.partners):
            if partner.beyond_params is not None:
                partner.beyond_params.pop(self, None)
        return 0

    cdef list convert(self, tuple arrays):
        """The input arrays as contiguous float64 vectors, checked against the input
        shapes; the last item is the stray inputs' numbers (or None).  Done before the
        run takes its nodes' numbers: numpy may release the GIL while it copies."""
        if len(arrays) != len(self.input_shapes):
            raise TypeError(f"this Graph takes {len(self.input_shapes)} input array(s) of "
                            f"shape {', '.join(map(str, self.input_shapes)) or '-'}, "
                            f"got {len(arrays)}")
        cdef list checked = []
        for i, (array, shape) in enumerate(zip(arrays, self.input_shapes)):
            data = real_array(i, array)
            if data.shape != shape:
                hint = ""
                if shape and data.shape == shape[:len(shape) - 1] and data.dtype.kind in "biu":
                    hint = (f" (class labels for one-hot rows? pass "
                            f"np.eye({shape[len(shape) - 1]})[labels])")
                raise ValueError(f"input {i} has shape {data.shape}, but the graph was "
                                 f"built over inputs of shape {shape}{hint}")
            checked.append(np.ascontiguousarray(data, dtype=np.float64).reshape(-1))
        stray = None
        if self.stray_inputs.size:
            whole = np.concatenate(checked) if checked else np.empty(0)
            stray = [whole[i] for i in range(self.input_nodes.size)
                     if self.input_slots[i] == <uint32_t>-1]
        checked.append(stray)
        return checked

    cdef int load(self, list batch) except -1:
        """Fill the input leaves from convert()'s vectors (the caller holds RUN_LOCK and
        has called begin())."""
        cdef Py_ssize_t offset = 0, n, i, a = 0
        cdef size_t runs_start = 0
        cdef const double[::1] view
        for data in batch[:len(batch) - 1]:
            n = data.size
            if n:
                view = data
                cg_plan_load(self.plan, self.input_slots + offset,
                             self.input_runs + 2 * runs_start,
                             self.input_runs_end[a] - runs_start, &view[0])
            runs_start = self.input_runs_end[a]
            offset += n
            a += 1
        stray = batch[len(batch) - 1]
        if stray is not None:   # leaves no node of the graph reads: written as nodes,
            flush_graphs(self, False)   # after every other graph handed its numbers back
            for i in range(self.stray_inputs.size):
                self.stray_inputs.nodes[i].data = stray[i]
                self.stray_inputs.nodes[i].grad = 0.0
            nodes_changed()
        return 0

    cdef long run(self, bint forward, bint backward, cg_update *update=NULL) except -2:
        """The plan's C work, with RUN_LOCK given up and the GIL released: forward,
        backward, and with `update` the optimizer's step over the plan's parameters
        (their grads zeroed first).  Returns -1, or the parameter a refused update would
        have made inf or NaN (nothing was updated)."""
        cdef cg_status status = CG_OK
        cdef cg_node *failed = NULL
        cdef bint in_backward = False
        cdef long broken = -1
        cdef double *val
        cdef double *grad
        cdef size_t i
        self.running = True
        self.runner = threading.get_ident()
        saved = RUN_LOCK._release_save()   # graphs sharing no node run meanwhile
        try:
            with nogil:
                cg_plan_arrays(self.plan, &val, &grad)
                if update != NULL:   # zero_grad() on the plan's copy: a memset a neuron
                    for i in range(self.n_optimizer_runs):
                        memset(grad + update.slots[self.optimizer_runs[2 * i]], 0,
                               self.optimizer_runs[2 * i + 1] * sizeof(double))
                if forward:
                    status = cg_plan_forward(self.plan, &failed)
                if status == CG_OK and backward:
                    in_backward = True
                    status = cg_plan_backward(self.plan, &failed)
                if status == CG_OK and update != NULL:
                    broken = cg_plan_update(self.plan, update)
        finally:
            RUN_LOCK._acquire_restore(saved)
            self.running = False
            RUN_LOCK.notify_all()
        if backward and self.loss is not None and (<Value>self.loss).node.n_kids == 0:
            (<Value>self.loss).node.grad = 1.0  # the loss is a leaf
        if status != CG_OK:
            sync_nodes()   # the error message reads the failed node's numbers
            raise_status(status, failed, in_backward)
        return broken


cdef class BatchTemplate:
    """A training step over a batch, recorded over two examples and three, from which
    the Graph for any batch size is copied without building its nodes (csrc/tile.c).

    ``two`` and ``three`` are Graphs of the same step over batches of two and three
    examples (inputs of shape (2, ...) and (3, ...); outputs, if any, one entry per
    example): a loss must be one graph per example, the losses summed by one
    ``cgrad.sum`` (as cgrad's losses do) or by Python's ``sum()`` and scaled by
    1/batch or not at all, and outputs the loss does not read come only without a loss
    (a prediction).  ``graph(batch).outputs()`` are then ``batch`` rows.  The copy for
    three examples is checked step for step against ``three`` (which is not kept); a
    step that is not such a sum (a constant factor, a term over two examples) raises
    ValueError saying so.  ``graph(batch)`` gives the Graph for that many examples: the
    steps the graph over that batch would run, in the same order, so the same numbers
    bit for bit, with no Value per example (its nodes are the parameters' alone: they
    stay in step with it, as with any Graph)."""
    cdef cg_tiling *tiling
    cdef readonly Graph two
    cdef tuple rest            # each input's shape past the batch axis
    cdef size_t *widths
    cdef size_t per_example    # input numbers an example has
    cdef tuple out_rest        # the outputs' shape past the batch axis
    cdef size_t per_output     # outputs an example has

    def __init__(self, Graph two not None, Graph three not None):
        if self.tiling != NULL:
            raise RuntimeError("a BatchTemplate is made once")
        cdef Graph graph
        for graph, n in ((two, 2), (three, 3)):
            graph.ready()
            if not graph.input_shapes \
                    or any(len(shape) == 0 or shape[0] != n for shape in graph.input_shapes) \
                    or graph.output_nodes.size and graph.output_shape[0] != n:
                raise ValueError(f"a BatchTemplate needs Graphs over inputs of {n} "
                                 f"examples (shapes ({n}, ...)), their outputs one entry "
                                 f"per example; got {graph!r}")
        if tuple(s[1:] for s in two.input_shapes) != tuple(s[1:] for s in three.input_shapes) \
                or two.output_shape[1:] != three.output_shape[1:] \
                or (two.loss is None) != (three.loss is None):
            raise ValueError(f"the Graphs differ past the batch axis: {two!r} and {three!r}")
        self.read(two)
        self.check(three.plan, three.input_slots, three.output_slots)

    cdef int check(self, cg_plan *three, uint32_t *three_inputs,
                   uint32_t *three_outputs) except -1:
        """Whether the copy for three examples is the plan recorded over three."""
        cdef uint32_t *slots = <uint32_t *>malloc(
            (3 * (self.per_example + self.per_output) + 1) * sizeof(uint32_t))
        if slots == NULL:
            raise MemoryError()
        cdef uint32_t *outs = slots + 3 * self.per_example
        cdef cg_plan *copy = cg_tiling_plan(self.tiling, 3, slots, outs, 0)
        cdef int same = copy != NULL and cg_plans_match(
            copy, slots, three, three_inputs, 3 * self.per_example,
            outs, three_outputs, 3 * self.per_output)
        cg_plan_free(copy)
        free(slots)
        if copy == NULL:
            raise MemoryError()
        if not same:
            raise ValueError("this step cannot be copied to other batch sizes: over three "
                             "examples it is not the two-example step with one more "
                             "example (a constant that depends on the batch other than "
                             "1/batch, or a term the batch size changes)")
        return 0

    cdef int read(self, Graph two) except -1:
        """Read the two-example step (checked by the caller, or by an earlier caller
        for an unpickled copy)."""
        self.rest = tuple(shape[1:] for shape in two.input_shapes)
        cdef size_t g, n_groups = len(self.rest)
        self.widths = <size_t *>malloc((n_groups + 1) * sizeof(size_t))
        if self.widths == NULL:
            raise MemoryError()
        self.per_example = 0
        for g in range(n_groups):
            self.widths[g] = math.prod(self.rest[g])
            self.per_example += self.widths[g]
        if two.output_nodes.size and (len(two.output_shape) == 0 or two.output_shape[0] != 2):
            raise ValueError(f"this step cannot be copied to other batch sizes: its outputs "
                             f"(shape {two.output_shape} over two examples) are not one "
                             f"entry per example")
        self.out_rest = two.output_shape[1:] if two.output_nodes.size else ()
        self.per_output = two.output_nodes.size // 2
        cdef const char *why = NULL
        self.tiling = cg_tiling_new(two.plan, two.input_slots, self.widths, n_groups,
                                    two.output_slots, self.per_output, &why)
        if self.tiling == NULL:
            reason = why.decode()
            if reason == "out of memory":
                raise MemoryError()
            raise ValueError(f"this step cannot be copied to other batch sizes: {reason}")
        self.two = two
        return 0

    def __dealloc__(self):
        cg_tiling_free(self.tiling)
        free(self.widths)

    def __reduce__(self):
        """Its two-example Graph (recorded again where it is unpickled; checked when
        this template was made)."""
        if self.tiling == NULL:
            raise TypeError("an unmade BatchTemplate cannot be pickled")
        return (_rebuild_template, (self.two,))

    def graph(self, Py_ssize_t batch):
        """The Graph for `batch` examples (inputs of shape (batch, ...)): `two` itself
        for 2, a copy for more."""
        if self.tiling == NULL:
            raise RuntimeError("this BatchTemplate was never made")
        if batch < 2:
            raise ValueError(f"a BatchTemplate copies steps of 2 examples or more, "
                             f"not {batch}: record smaller batches as a Graph")
        if batch == 2:
            return self.two
        if cg_tiling_slots(self.tiling, batch) >= 0xFFFFFFFF:
            raise ValueError(f"a step over {batch} examples would need "
                             f"{cg_tiling_slots(self.tiling, batch):,} slots, more than a "
                             f"plan holds (2**32 - 1): use smaller batches")
        cdef Graph graph = Graph.__new__(Graph)
        graph.tile(self, batch)
        return graph

    def __repr__(self):
        return f"BatchTemplate(inputs of shape {', '.join(str(('B',) + r) for r in self.rest)})"
