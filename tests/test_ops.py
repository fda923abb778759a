"""Every op: value and gradient against the reference engine and finite differences."""
import math

import pytest

from cgrad import Value, reference
from conftest import central_difference, close

# name -> (function of two Values or reference Values, inputs where it is defined)
OPS = {
    'add': (lambda a, b: a + b, (1.5, -2.25)),
    'mul': (lambda a, b: a * b, (1.5, -2.25)),
    'sub': (lambda a, b: a - b, (1.5, -2.25)),
    'div': (lambda a, b: a / b, (1.5, -2.25)),
    'neg': (lambda a, b: -a * b, (1.5, -2.25)),
    'radd': (lambda a, b: 3 + a * b, (1.5, -2.25)),
    'rsub': (lambda a, b: 3 - a * b, (1.5, -2.25)),
    'rmul': (lambda a, b: 3 * a + b, (1.5, -2.25)),
    'rdiv': (lambda a, b: 3 / a + b, (1.5, -2.25)),
    'div_number': (lambda a, b: a / 4 + b / 3, (1.5, -2.25)),
    'pow2': (lambda a, b: a ** 2 * b, (1.5, -2.25)),
    'pow3': (lambda a, b: (a * b) ** 3, (1.5, -2.25)),
    'pow_neg': (lambda a, b: a ** -2 + b, (1.5, -2.25)),
    'pow_half': (lambda a, b: a ** 0.5 * b, (1.5, -2.25)),
    'powv': (lambda a, b: a ** b, (1.5, -2.25)),
    'rpow': (lambda a, b: 2 ** (a * b), (1.5, -2.25)),
    'relu_pos': (lambda a, b: (a * b).relu() + a.relu(), (1.5, 2.25)),
    'relu_neg': (lambda a, b: (a * b).relu() + a, (1.5, -2.25)),
    'tanh': (lambda a, b: (a * b).tanh(), (0.5, -0.75)),
    'exp': (lambda a, b: (a * b).exp(), (0.5, -0.75)),
    'log': (lambda a, b: (a * a + b).log(), (0.5, 2.75)),
    'sigmoid': (lambda a, b: (a * b).sigmoid(), (0.5, -0.75)),
    'reuse': (lambda a, b: a * a + a * b + a, (1.5, -2.25)),
}


def run(engine, f, inputs):
    xs = [engine.Value(x) for x in inputs]
    out = f(*xs)
    out.backward()
    return out.data, [x.grad for x in xs]


@pytest.mark.parametrize("name", OPS)
def test_value_and_grad_equal_the_reference(name):
    f, inputs = OPS[name]
    import cgrad
    data, grads = run(cgrad, f, inputs)
    ref_data, ref_grads = run(reference, f, inputs)
    assert data == ref_data
    assert grads == pytest.approx(ref_grads, rel=1e-15, abs=0)


@pytest.mark.parametrize("name", OPS)
def test_grad_equals_finite_differences(name):
    f, inputs = OPS[name]
    import cgrad
    _, grads = run(cgrad, f, inputs)
    as_float = lambda xs: f(*[Value(x) for x in xs]).data
    for i, g in enumerate(grads):
        assert close(g, central_difference(as_float, inputs, i), rel=1e-6, abs_=1e-8)


def test_tanh_is_stable_at_large_inputs():
    assert Value(1000).tanh().data == 1.0
    assert Value(-1000).tanh().data == -1.0
    assert Value(-1000).sigmoid().data == 0.0
    assert Value(1000).sigmoid().data == 1.0


def test_relu_at_zero_passes_no_gradient():
    x = Value(0.0)
    y = x.relu()
    y.backward()
    assert y.data == 0.0 and x.grad == 0.0


def test_powv_zero_base_has_zero_exponent_gradient():
    a, b = Value(0.0), Value(2.0)
    (a ** b).backward()
    assert (a.grad, b.grad) == (0.0, 0.0)


def test_leaf_grads_accumulate_and_interior_grads_reset():
    a, b = Value(2.0), Value(-3.0)
    mid = a * b
    out = mid + a
    out.backward()
    first = (a.grad, b.grad, mid.grad)
    out.backward()
    assert (a.grad, b.grad) == (2 * first[0], 2 * first[1])
    assert mid.grad == first[2] == 1.0


def test_backward_on_a_leaf_sets_its_grad_to_one():
    a = Value(4.0)
    a.backward()
    assert a.grad == 1.0


def test_manual_backward_calls_apply_the_local_chain_rule():
    a, b = Value(2.0), Value(-3.0)
    c = a * b
    c.grad = 1.0
    c._backward()
    assert (a.grad, b.grad) == (-3.0, 2.0)
    t = Value(0.5).tanh()
    t.grad = 2.0
    (x,) = t._prev
    t._backward()
    assert x.grad == (1 - math.tanh(0.5) ** 2) * 2.0
