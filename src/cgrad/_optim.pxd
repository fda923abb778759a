from cgrad._capi cimport cg_node


cdef class ParameterArray:
    cdef cg_node **nodes
    cdef double *buffer      # 2 n_state + 1 rows of n doubles: these three
    cdef double *state       # n_state rows (the velocity; the moments m then v)
    cdef double *next_state  # n_state rows an update writes its new state to
    cdef double *new_data    # a row an update writes its new values to
    cdef readonly Py_ssize_t size
    cdef readonly int n_state
    cdef tuple values        # keeps the Values (and so their nodes) alive

    cdef int check(self, long broken, str name, double lr) except -1
    cdef void took_next_state(self) noexcept
