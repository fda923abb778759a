"""A pure-Python engine with cgrad's API and ops, written the micrograd way.

It is the oracle the tests compare cgrad with and the baseline the benchmarks measure
against: closures for the chain rule, a recursive topological sort, Python floats.
Kept deliberately plain; do not optimise it.
"""
import math


def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


_recording = [False]   # inside backward(create_graph=True): grads are Values


def _v(x):
    """A node's number as the chain rule uses it: the Value itself while a gradient is
    recorded (so that it can be differentiated again), else its float."""
    return x if _recording[0] else x.data


def _log(x):
    return x.log() if isinstance(x, Value) else math.log(x)


class Value:
    """ stores a single scalar value and its gradient """

    def __init__(self, data, _children=(), _op='', label=''):
        if isinstance(data, (str, bytes)) or isinstance(data, Value):
            raise TypeError(f"Value() data must be a real number, not {type(data).__name__}")
        self.data = float(data)
        self.grad = 0.0
        self._backward = lambda: None
        self._prev = set(_children)
        self._op = _op
        self.label = label

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), '+')

        def _backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), '*')

        def _backward():
            self.grad += _v(other) * out.grad
            other.grad += _v(self) * out.grad
        out._backward = _backward
        return out

    def __pow__(self, other):
        if isinstance(other, Value):
            if self.data < 0:
                raise ValueError("Value ** Value needs a base >= 0")
            out = Value(self.data ** other.data, (self, other), '**')

            def _backward():
                self.grad += (_v(other) * _v(self) ** (_v(other) - 1)) * out.grad
                other.grad += (0.0 if self.data == 0 else _v(out) * _log(_v(self))) * out.grad
            out._backward = _backward
            return out
        if not isinstance(other, (int, float)):
            return NotImplemented
        if self.data < 0 and other != math.floor(other):
            raise ValueError("a negative number cannot be raised to a fractional power")
        out = Value(self.data ** other, (self,), f'**{other}')

        def _backward():
            self.grad += (other * _v(self) ** (other - 1)) * out.grad
        out._backward = _backward
        return out

    def __rpow__(self, other):
        return Value(other) ** self

    def _unary(self, value, op, local_grad):
        out = Value(value, (self,), op)

        def _backward():
            self.grad += local_grad(out) * out.grad
        out._backward = _backward
        return out

    def relu(self):
        return self._unary(0 if self.data < 0 else self.data, 'ReLU',
                           lambda out: float(out.data > 0))

    def tanh(self):
        return self._unary(math.tanh(self.data), 'tanh', lambda out: 1 - _v(out) ** 2)

    def exp(self):
        return self._unary(math.exp(self.data), 'exp', lambda out: _v(out))

    def log(self):
        return self._unary(math.log(self.data), 'log', lambda out: 1 / _v(self))

    def sigmoid(self):
        return self._unary(_sigmoid(self.data), 'sigmoid',
                           lambda out: _v(out) * (1 - _v(out)))

    def heaviside(self):
        return self._unary(1.0 if self.data > 0 else 0.0, 'step', lambda out: 0.0)

    def reciprocal(self):
        return self._unary(1.0 / self.data, 'recip', lambda out: -(_v(out) * _v(out)))

    def backward(self, create_graph=False):
        """micrograd's backward().  With create_graph, the chain rule runs on Values:
        every grad becomes a Value that can be differentiated again (each closure uses
        the nodes themselves instead of their floats)."""
        topo = []
        visited = set()

        def build_topo(v):
            if v not in visited:
                visited.add(v)
                for child in v._prev:
                    build_topo(child)
                topo.append(v)
        build_topo(self)

        for v in topo:  # interior grads restart from zero; leaf grads accumulate
            if v._prev:
                v.grad = 0.0
            if create_graph:
                v.grad = v.grad if isinstance(v.grad, Value) else Value(v.grad)
        self.grad = Value(1.0) if create_graph else 1.0
        _recording[0] = create_graph
        try:
            for v in reversed(topo):
                v._backward()
        finally:
            _recording[0] = False

    def __neg__(self):
        return self * -1

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return other + (-self)

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * other**-1

    def __rtruediv__(self, other):
        return other * self**-1

    def __repr__(self):
        return f"Value(data={self.data}, grad={self.grad})"
