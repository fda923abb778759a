"""Every op in the op table (csrc/cgrad.h), run by one harness against both engines.

The C engine and the pure-Python reference (written the micrograd way) must agree bit
for bit on each op's value and gradient, and on what they refuse.  A unary op added to
the table without a row in UNARY fails test_every_unary_op_has_a_row."""
import math

import pytest

from cgrad import reference
from cgrad._core import _op_table
from cgrad.engine import Value

ENGINES = {"cgrad": Value, "reference": reference.Value}

def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


# op key -> (how a Value applies it, its value and local derivative by hand (the
# arithmetic micrograd's Python performs), the points it is checked at)
UNARY = {
    "relu": (lambda v: v.relu(), lambda x: 0.0 if x < 0 else x,
             lambda x, out: 1.0 if out > 0 else 0.0, [-2.0, -0.0, 0.0, 1e-300, 3.5]),
    "tanh": (lambda v: v.tanh(), math.tanh, lambda x, t: 1 - t ** 2,
             [-30.0, -0.5, 0.0, 0.7, 19.0]),
    "exp": (lambda v: v.exp(), math.exp, lambda x, out: out, [-700.0, -1.0, 0.0, 0.5, 700.0]),
    "log": (lambda v: v.log(), math.log, lambda x, out: 1 / x, [1e-300, 0.3, 1.0, 2.5, 1e300]),
    "sigmoid": (lambda v: v.sigmoid(), sigmoid, lambda x, s: s * (1 - s),
                [-800.0, -3.0, 0.0, 0.2, 40.0]),
    "step": (lambda v: v.heaviside(), lambda x: 1.0 if x > 0 else 0.0, lambda x, out: 0.0,
             [-1.0, 0.0, 1e-300, 2.0]),
    "recip": (lambda v: v.reciprocal(), lambda x: 1.0 / x, lambda x, r: -(r * r),
              [-3.0, 1e-100, 0.998, 7.0]),
    "**k": (lambda v: v ** 3, lambda x: x ** 3, lambda x, out: 3 * x ** 2, [-2.0, 0.0, 0.5, 1.1]),
}
# values each op refuses, with the error both engines raise
DOMAIN = {
    "log": ([0.0, -1.0], ValueError),
    "recip": ([0.0], ZeroDivisionError),
}


def test_every_unary_op_has_a_row():
    unary = {key for key, (_, low, high, _) in _op_table().items() if low == high == 1}
    assert unary - set(UNARY) == set(), "add a row to UNARY for each new unary op"


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("key", sorted(UNARY))
def test_unary_op_against_its_hand_written_formula(engine, key):
    apply, value, local, points = UNARY[key]
    for x0 in points:
        x = ENGINES[engine](x0)
        out = apply(x)
        (out * 1.5).backward()
        want = value(x0)
        assert out.data == want, (key, x0)
        assert x.grad == local(x0, want) * 1.5, (key, x0)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("key", sorted(DOMAIN))
def test_unary_op_refuses_the_same_inputs(engine, key):
    points, error = DOMAIN[key]
    for x0 in points:
        with pytest.raises(error):
            UNARY[key][0](ENGINES[engine](x0))


def test_table_names_are_the_ops_names():
    table = _op_table()
    assert table["relu"][0] == Value(1.0).relu()._op == "ReLU"
    assert table["step"][0] == Value(1.0).heaviside()._op
    assert table["+"][1:3] == (2, 2) and table["sum"][2] == -1
    assert all(table[k][3] for k in ("relu", "tanh", "sigmoid", "step"))
    assert not any(table[k][3] for k in ("exp", "log", "recip", "**k"))
