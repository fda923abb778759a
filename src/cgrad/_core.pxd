# _core's own API, for the other modules: the Value type and the functions that build,
# find and sync nodes.  The C declarations are in _capi.pxd.
from cpython.ref cimport PyObject
from libc.stdint cimport uint8_t, uint32_t

from cgrad._capi cimport cg_node, cg_vec, cg_status


cdef class Value:
    cdef cg_node node
    cdef PyObject *attrs        # the instance __dict__, made on first use (see _core.pyx)
    cdef object __weakref__


cdef Value leaf(double data)
cdef Value unary(uint8_t op, Value a, double arg=*, uint8_t flags=*)
cdef Value binary(uint8_t op, Value a, Value b)
cdef object owner_of(cg_node *n)
cdef bint has_python_backward(cg_node *n) except -1   # a `_backward` in its attributes
cdef int interior_order(cg_node **roots, size_t n_roots, cg_vec *order,
                        size_t *n_first) noexcept nogil
cdef void free_order(cg_vec *order) noexcept nogil   # an order interior_order filled
cdef bint has_repeats(cg_node **nodes, size_t n) except -1  # a node twice among nodes
cdef int raise_status(cg_status status, cg_node *failed, bint in_backward,
                      object grad_in=*) except -1

# Replayed graphs keep their numbers in their plans and bring the nodes up to date only
# when something may look at them: every read or write of a node goes through these.
cdef int sync_nodes() except -1          # bring every replayed graph's nodes up to date
cdef void nodes_changed() noexcept       # nodes were written outside a plan
cdef void replay_pending() noexcept      # a plan now holds numbers its nodes lack
cdef void replay_settled() noexcept      # no plan does (called under the run lock)
cdef unsigned long node_epoch() noexcept
