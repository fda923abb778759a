from cgrad._capi cimport cg_node


cdef class ParameterArray:
    cdef cg_node **nodes
    cdef double *state       # n_state rows of n doubles (velocity, moments), 3 of scratch
    cdef readonly Py_ssize_t size
    cdef readonly int n_state
    cdef tuple values        # keeps the Values (and so their nodes) alive

    cdef int check(self, long broken, str name, double lr) except -1
