# cython: language_level=3, boundscheck=False, wraparound=False
"""A fixed list of parameters, updated in C: the optimizers' inner loop."""
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from cgrad._core import _drop_grad_values
from cgrad._capi cimport *
from cgrad._core cimport Value, has_repeats, sync_nodes, nodes_changed


cdef class ParameterArray:
    """The nodes of a list of leaf Values, with per-parameter state buffers (velocity,
    moments) for optimizers."""
    def __cinit__(self, values, int n_state):
        cdef Value v
        cdef Py_ssize_t i
        self.values = tuple(values)
        for i, item in enumerate(self.values):
            if not isinstance(item, Value):
                raise TypeError(f"optimizers take cgrad Values, got {type(item).__name__} "
                                f"at position {i}")
            v = item
            if v.node.n_kids != 0 or v.node.op != CG_LEAF:
                raise ValueError(f"parameter {i} ({v!r}) was computed from other Values "
                                 f"(op {v._op!r}): an optimizer updates leaves, such as "
                                 f"model.parameters()")
        self.size = len(self.values)
        self.n_state = n_state
        self.nodes = <cg_node **>calloc(max(self.size, 1), sizeof(cg_node *))
        # the state rows, the rows the next state goes to, the new values (cg_adam_step)
        self.buffer = <double *>calloc(max(self.size * (2 * n_state + 1), 1), sizeof(double))
        if self.nodes == NULL or self.buffer == NULL:
            raise MemoryError()
        # The state's zeros written now: an update reads the state before it writes it,
        # and a fresh calloc'd page read before it is written faults twice, the second
        # time with a TLB flush on every core (notes/NOTES.md, Optimizers)
        memset(self.buffer, 0, self.size * n_state * sizeof(double))
        self.state = self.buffer
        self.next_state = self.buffer + self.size * n_state
        self.new_data = self.next_state + self.size * n_state
        for i in range(self.size):
            self.nodes[i] = &(<Value>self.values[i]).node
        if has_repeats(self.nodes, self.size):
            raise ValueError("a parameter appears twice in the list")

    def __dealloc__(self):
        free(self.nodes)
        free(self.buffer)

    def __reduce__(self):
        """The parameters and the update's state (velocity, moments): a pickled
        optimizer goes on where it stopped."""
        sync_nodes()    # a Graph's run may be writing the state
        cdef Py_ssize_t n = self.size * self.n_state * sizeof(double)
        return (_rebuild_parameter_array,
                (self.values, self.n_state, (<char *>self.state)[:n] if n else b""))

    def zero_grad(self):
        sync_nodes()
        cg_zero_grads(self.nodes, self.size)
        nodes_changed()
        _drop_grad_values(self.values)   # as `p.grad = 0` does

    def sgd_step(self, double lr, double momentum, double weight_decay):
        if self.n_state < 1:
            raise ValueError("this parameter array has no room for SGD's velocity")
        sync_nodes()
        nodes_changed()
        self.check(cg_sgd_step(self.nodes, self.size, lr, momentum, weight_decay,
                               self.state, self.next_state, self.new_data), "SGD", lr)

    def adam_step(self, double lr, double beta1, double beta2, double eps,
                  double weight_decay, long step):
        if self.n_state < 2:
            raise ValueError("this parameter array has no room for Adam's moments")
        sync_nodes()
        nodes_changed()
        self.check(cg_adam_step(self.nodes, self.size, lr, beta1, beta2, eps, weight_decay,
                                step, self.state, self.next_state, self.new_data), "Adam", lr)

    cdef void took_next_state(self) noexcept:
        """After an update went through: the rows it wrote are the state now."""
        self.state, self.next_state = self.next_state, self.state

    cdef int check(self, long broken, str name, double lr) except -1:
        if broken < 0:
            self.took_next_state()
        else:
            p = self.values[broken]
            raise OverflowError(
                f"{name} step refused: parameter {broken} ({p!r}) would become inf or nan "
                f"(lr={lr!r}); nothing was updated.  Lower the learning rate or momentum.")
        return 0

    def __len__(self):
        return self.size


def _rebuild_parameter_array(values, int n_state, bytes state):
    cdef ParameterArray array = ParameterArray(values, n_state)
    if len(state) != array.size * n_state * <Py_ssize_t>sizeof(double):
        raise ValueError(f"corrupt pickled optimizer: {len(state)} bytes of state for "
                         f"{array.size} parameters")
    if state:
        memcpy(array.state, <const char *>state, len(state))
    return array
