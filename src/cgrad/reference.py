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


# ---- ops written once, in the op table (csrc/ops.def) -----------------------------------
# The reference writes the classic ops above by hand (they are its oracle); the others
# come from the table's Python forward and derivative recipes, evaluated on floats (or on
# Values while a gradient is recorded).

_METHODS = {"step": "heaviside", "recip": "reciprocal"}   # op key -> method, where not equal


def _op_function(key, float_version):
    """An op for recipes: the Value's method on a Value (while a gradient is recorded),
    the float version on a float."""
    name = _METHODS.get(key, key)
    return lambda x: getattr(x, name)() if isinstance(x, Value) else float_version(x)


def _recipe_names(recipes):
    """The names ops.def's recipes use: math's functions, Python's abs, max, float, and
    every table op, its float version being its own Python forward."""
    names = {"__builtins__": {}, "abs": abs, "max": max, "float": float,
             "log1p": math.log1p, "sigmoid": _sigmoid}
    for key, (py_forward, _, _, unary_math) in recipes.items():
        if not unary_math:
            continue
        if hasattr(math, key):
            float_version = getattr(math, key)
        elif key in ("abs", "sigmoid"):
            float_version = {"abs": abs, "sigmoid": _sigmoid}[key]
        else:
            code = compile(py_forward, key, "eval")
            float_version = (lambda c: lambda a, arg=0.0: eval(c, names, {"a": a, "arg": arg}))(code)
        names[key] = _op_function(key, float_version)
    return names


def _table_method(key, symbol, py_forward, derivative):
    forward = compile(py_forward, f"<{key}>", "eval")
    local = compile(derivative, f"<derivative of {key}>", "eval") if derivative else None

    def method(self, arg=0.0):
        out = Value(eval(forward, _RECIPE_NAMES, {"a": self.data, "arg": arg}), (self,),
                    symbol)

        def _backward():
            if local is not None:
                names = {"a": _v(self), "out": _v(out), "arg": arg}
                self.grad += eval(local, _RECIPE_NAMES, names) * out.grad
        out._backward = _backward
        return out
    method.__name__ = key
    return method


def _table_ops():
    """{key: method} for every op whose math is in the table, and the recipes' names."""
    from cgrad._core import _op_recipes, _op_table
    recipes, table = _op_recipes(), _op_table()
    ops = {key: _table_method(key, table[key][0], py_forward, derivative)
           for key, (py_forward, derivative, _, unary_math) in recipes.items() if unary_math}
    return ops, _recipe_names(recipes)


_TABLE_OPS, _RECIPE_NAMES = _table_ops()
for _key, _method in _TABLE_OPS.items():   # a method for each op not written by hand above
    if _key not in ("gelu", "gelu_tanh", "leaky_relu") and _key not in _METHODS \
            and not hasattr(Value, _key):
        setattr(Value, _key, _method)
Value.__abs__ = Value.abs


def _gelu(self, approximate='none'):
    return _TABLE_OPS["gelu_tanh" if approximate == 'tanh' else "gelu"](self)


def _leaky_relu(self, negative_slope=0.01):
    return _TABLE_OPS["leaky_relu"](self, negative_slope)


Value.gelu, Value.leaky_relu = _gelu, _leaky_relu


def _max(self, other):
    other = other if isinstance(other, Value) else Value(other)
    picked_other = other.data > self.data           # Python's max(a, b)
    out = Value(other.data if picked_other else self.data, (self, other), 'max')

    def _backward():
        (other if picked_other else self).grad += out.grad
    out._backward = _backward
    return out


def _min(self, other):
    other = other if isinstance(other, Value) else Value(other)
    picked_other = other.data < self.data
    out = Value(other.data if picked_other else self.data, (self, other), 'min')

    def _backward():
        (other if picked_other else self).grad += out.grad
    out._backward = _backward
    return out


def _clamp(self, low=None, high=None):
    out = self
    if high is not None:
        out = out.min(high)
    if low is not None:
        out = out.max(low)
    return out


Value.max, Value.min, Value.clamp = _max, _min, _clamp
