# cython: language_level=3, boundscheck=False, wraparound=False
"""A fixed list of parameters, updated in C: the optimizers' inner loop."""
from libc.stdlib cimport calloc, free

from cgrad._core cimport (Value, cg_node, cg_sgd_step, cg_adam_step, cg_zero_grads)


cdef class ParameterArray:
    """The nodes of a list of Values, with per-parameter state buffers for optimizers."""
    cdef cg_node **nodes
    cdef double *state       # n_state rows of n doubles (velocity, moments)
    cdef readonly Py_ssize_t size
    cdef readonly int n_state
    cdef list values         # keeps the Values (and so their nodes) alive

    def __cinit__(self, values, int n_state=0):
        self.values = list(values)
        for v in self.values:
            if type(v) is not Value:
                raise TypeError(f"optimizers take cgrad Values, got {type(v).__name__}")
        if len(set(map(id, self.values))) != len(self.values):
            raise ValueError("a parameter appears twice in the list")
        self.size = len(self.values)
        self.n_state = n_state
        self.nodes = <cg_node **>calloc(max(self.size, 1), sizeof(cg_node *))
        self.state = <double *>calloc(max(self.size * n_state, 1), sizeof(double))
        if self.nodes == NULL or self.state == NULL:
            raise MemoryError()
        for i, v in enumerate(self.values):
            self.nodes[i] = &(<Value>v).node

    def __dealloc__(self):
        free(self.nodes)
        free(self.state)

    def zero_grad(self):
        cg_zero_grads(self.nodes, self.size)

    def sgd_step(self, double lr, double momentum, double weight_decay):
        if momentum != 0.0 and self.n_state < 1:
            raise ValueError("momentum needs a velocity buffer: make the array with n_state=1")
        cg_sgd_step(self.nodes, self.size, lr, momentum, weight_decay, self.state)

    def adam_step(self, double lr, double beta1, double beta2, double eps,
                  double weight_decay, long step):
        if self.n_state < 2:
            raise ValueError("Adam needs two moment buffers: make the array with n_state=2")
        cg_adam_step(self.nodes, self.size, lr, beta1, beta2, eps, weight_decay, step,
                     self.state, self.state + self.size)

    def state_array(self, int row):
        """A copy of one state buffer (e.g. Adam's first moments) as a list."""
        if not 0 <= row < self.n_state:
            raise IndexError(f"state row {row} out of range (this array has {self.n_state})")
        return [self.state[row * self.size + i] for i in range(self.size)]

    def __len__(self):
        return self.size
