"""One row per op of the op table (csrc/ops.def): how to apply it, its PyTorch float64
spelling, and where to check it.  The harness (test_op_table.py) runs every check on
every row; an op in the table without a row fails it.  Every test that loops over ops
draws them from here (ROWS, SPELLINGS, ACTIVATIONS).

A row: key -> Row(apply, torch, points, extremes, refused, by_hand)
  apply(*values)   the op on Values of either engine (cgrad's, the reference's)
  torch(*tensors)  the same in PyTorch (float64), or None where PyTorch has no such op
  points           inputs (tuples, one number per operand) away from kinks and ties,
                   where values and derivatives are compared
  extremes         inputs at the edges: each must give the reference's numbers or the
                   same exception, never a crash
  refused          inputs outside the domain, and the exception both engines raise
  by_hand          for the classic one-input ops, (value(x), local derivative(x, out),
                   points): the arithmetic micrograd's Python performs, written out
"""
import math
from typing import Any, Callable, NamedTuple

import cgrad


class Row(NamedTuple):
    apply: Callable[..., Any]
    torch: Any
    points: list
    extremes: list = []
    refused: tuple = ([], None)
    by_hand: Any = None


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _t():
    import torch
    return torch


def _f():
    import torch.nn.functional as F
    return F


EDGE = [0.0, -0.0, 5e-324, -5e-324, 1e-300, 1e300, -1e300, 1.7e308, -1.7e308,
        math.inf, -math.inf, math.nan]
EDGE1 = [(x,) for x in EDGE]
EDGE2 = [(x, y) for x in (0.0, 1e300, -math.inf, math.nan, 2.0) for y in (0.0, -1e300, math.inf, 3.0)]

ROWS = {
    "+": Row(lambda a, b: a + b, lambda a, b: a + b, [(1.5, -2.25), (0.1, 0.2)], EDGE2),
    "*": Row(lambda a, b: a * b, lambda a, b: a * b, [(1.5, -2.25), (0.1, 3.0)], EDGE2),
    "**k": Row(lambda a: a ** 3, lambda a: a ** 3, [(-2.0,), (0.5,), (1.1,)], EDGE1,
               by_hand=(lambda x: x ** 3, lambda x, out: 3 * x ** 2, [-2.0, 0.0, 0.5, 1.1])),
    "**": Row(lambda a, b: a ** b, lambda a, b: a ** b, [(1.5, -2.25), (0.7, 0.3)],
              [(0.0, 2.0), (2.0, 1e300), (1e300, 2.0)], ([(-1.0, 0.5)], ValueError)),
    "relu": Row(lambda a: a.relu(), lambda a: _t().relu(a), [(-2.0,), (3.5,)], EDGE1,
                by_hand=(lambda x: 0.0 if x < 0 else x, lambda x, out: 1.0 if out > 0 else 0.0,
                         [-2.0, -0.0, 0.0, 1e-300, 3.5])),
    "tanh": Row(lambda a: a.tanh(), lambda a: _t().tanh(a), [(-0.5,), (0.7,), (2.0,)], EDGE1,
                by_hand=(math.tanh, lambda x, t: 1 - t ** 2, [-30.0, -0.5, 0.0, 0.7, 19.0])),
    "exp": Row(lambda a: a.exp(), lambda a: _t().exp(a), [(-1.0,), (0.5,)], EDGE1,
               by_hand=(math.exp, lambda x, out: out, [-700.0, -1.0, 0.0, 0.5, 700.0])),
    "log": Row(lambda a: a.log(), lambda a: _t().log(a), [(0.3,), (2.5,)],
               [(5e-324,), (1e-300,), (1.7e308,), (math.inf,), (math.nan,)],
               ([(0.0,), (-1.0,)], ValueError),
               by_hand=(math.log, lambda x, out: 1 / x, [1e-300, 0.3, 1.0, 2.5, 1e300])),
    "sigmoid": Row(lambda a: a.sigmoid(), lambda a: _t().sigmoid(a), [(-3.0,), (0.2,)], EDGE1,
                   by_hand=(sigmoid, lambda x, s: s * (1 - s), [-800.0, -3.0, 0.0, 0.2, 40.0])),
    "sum": Row(lambda a, b: cgrad.sum([a, b, a]), lambda a, b: a + b + a, [(1.5, -2.25)], EDGE2),
    "dot": Row(lambda a, b: cgrad.dot([a, b], [b, 2.0], 0.5),
               lambda a, b: a * b + b * 2.0 + 0.5, [(1.5, -2.25)], EDGE2),
    "logsumexp": Row(lambda a, b: cgrad.logsumexp([a, b]),
                     lambda a, b: _t().logsumexp(_t().stack([a, b]), 0),
                     [(1.5, -2.25), (-700.0, 0.0)], EDGE2),
    "step": Row(lambda a: a.heaviside(), lambda a: (a > 0).double() + 0 * a,
                [(-1.0,), (2.0,)], EDGE1,
                by_hand=(lambda x: 1.0 if x > 0 else 0.0, lambda x, out: 0.0,
                         [-1.0, 0.0, 1e-300, 2.0])),
    "recip": Row(lambda a: a.reciprocal(), lambda a: _t().reciprocal(a), [(-3.0,), (0.998,)],
                 EDGE1[2:], ([(0.0,)], ZeroDivisionError),
                 by_hand=(lambda x: 1.0 / x, lambda x, r: -(r * r), [-3.0, 1e-100, 0.998, 7.0])),
    "sin": Row(lambda a: a.sin(), lambda a: _t().sin(a), [(-1.3,), (0.4,), (2.9,)], EDGE1),
    "cos": Row(lambda a: a.cos(), lambda a: _t().cos(a), [(-1.3,), (0.4,), (2.9,)], EDGE1),
    "sqrt": Row(lambda a: a.sqrt(), lambda a: _t().sqrt(a), [(0.3,), (2.0,), (1e10,)],
                [(5e-324,), (1e300,), (math.inf,), (math.nan,)], ([(-1.0,)], ValueError)),
    "abs": Row(lambda a: abs(a), lambda a: _t().abs(a), [(-1.5,), (0.25,)], EDGE1),
    "sign": Row(lambda a: a.sign(), lambda a: _t().sign(a), [(-1.5,), (0.25,)], EDGE1),
    "erf": Row(lambda a: a.erf(), lambda a: _t().erf(a), [(-1.5,), (0.25,), (3.0,)], EDGE1),
    "gelu": Row(lambda a: a.gelu(), lambda a: _f().gelu(a), [(-1.5,), (0.25,), (3.0,)], EDGE1),
    "gelu_tanh": Row(lambda a: a.gelu(approximate='tanh'),
                     lambda a: _f().gelu(a, approximate='tanh'),
                     [(-1.5,), (0.25,), (3.0,)], EDGE1),
    "silu": Row(lambda a: a.silu(), lambda a: _f().silu(a), [(-1.5,), (0.25,), (3.0,)], EDGE1),
    "softplus": Row(lambda a: a.softplus(), lambda a: _f().softplus(a, threshold=1e308),
                    [(-30.0,), (-1.5,), (0.25,), (25.0,)], EDGE1),
    "leaky_relu": Row(lambda a: a.leaky_relu(), lambda a: _f().leaky_relu(a, 0.01),
                      [(-1.5,), (0.25,)], EDGE1),
    "max": Row(lambda a, b: a.max(b), lambda a, b: _t().maximum(a, b),
               [(1.5, -2.25), (-1.0, 2.0)], EDGE2),
    "min": Row(lambda a, b: a.min(b), lambda a, b: _t().minimum(a, b),
               [(1.5, -2.25), (-1.0, 2.0)], EDGE2),
}

# Python's spellings that cgrad builds from the table's ops (-, /, unary -, reflected
# operators, ** by a number): (apply, torch) are one function, run on Values and tensors
def _spelling(f, point=(1.5, -2.25)):
    return Row(f, f, [point])


SPELLINGS = {
    "sub": _spelling(lambda a, b: a - b),
    "div": _spelling(lambda a, b: a / b),
    "neg": _spelling(lambda a, b: -a * b),
    "radd": _spelling(lambda a, b: 3 + a * b),
    "rsub": _spelling(lambda a, b: 3 - a * b),
    "rmul": _spelling(lambda a, b: 3 * a + b),
    "rdiv": _spelling(lambda a, b: 3 / a + b),
    "div_number": _spelling(lambda a, b: a / 4 + b / 3),
    "pow2": _spelling(lambda a, b: a ** 2 * b),
    "pow_neg": _spelling(lambda a, b: a ** -2 + b),
    "pow_half": _spelling(lambda a, b: a ** 0.5 * b),
    "rpow": _spelling(lambda a, b: 2 ** (a * b)),
    "reuse": _spelling(lambda a, b: a * a + a * b + a),
}

# ops with no math of their own (structural), and where they are tested
WITHOUT_ROWS = {"leaf": "every test", "opaque": "test_extending.py",
                "row": "test_replay_layers.py", "local": "test_microgpt.py"}

# ops of n operands, which the reference spells with Python's ops (other bits)
NARY = {"sum", "dot", "logsumexp"}


def arity(key):
    return len(ROWS[key].points[0])


# the activations nn offers, by op key
ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu",
               "gelu_tanh": "gelu_tanh", "silu": "silu", "softplus": "softplus",
               "leaky_relu": "leaky_relu"}
