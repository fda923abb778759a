"""Every op in the op table (csrc/ops.def), run by one harness in every mode.

For each row of tests/op_rows.py: eager against the reference engine (bit for bit) and
PyTorch float64, against finite differences, replayed (and in a fused layer when the op
is an activation), first and second derivatives through cgrad.grad (and its numbers
without create_graph against backward()'s), pickled, and at the edges of the floats.
An op in the table without a row fails
test_every_op_has_a_row; a row missing a piece fails the check that needs it.  The
classic ops are also checked against formulas written out by hand (their rows'
by_hand), and Python's spellings built from the ops (-, /, reflected operators: SPELLINGS)
in every mode that applies to them."""
import math
import pickle

import numpy as np
import pytest

import cgrad
from cgrad import nn, reference
from cgrad._core import _op_recipes, _op_table
from cgrad.engine import Value
from conftest import central_difference, close
from op_rows import ACTIVATIONS, NARY, ROWS, SPELLINGS, WITHOUT_ROWS

ENGINES = {"cgrad": Value, "reference": reference.Value}


def test_every_op_has_a_row():
    assert set(_op_table()) == set(ROWS) | set(WITHOUT_ROWS), \
        "add a row to tests/op_rows.py for each new op"


def test_every_table_op_has_its_recipes():
    for key, (forward, derivative, has_arg, unary_math) in _op_recipes().items():
        if unary_math:
            assert forward, key
            compile(forward, key, "eval")
            if derivative:
                compile(derivative, key, "eval")


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("key", [k for k in sorted(ROWS) if ROWS[k].by_hand])
def test_unary_op_against_its_hand_written_formula(engine, key):
    value, local, points = ROWS[key].by_hand
    for x0 in points:
        x = ENGINES[engine](x0)
        out = ROWS[key].apply(x)
        (out * 1.5).backward()
        want = value(x0)
        assert out.data == want, (key, x0)
        assert x.grad == local(x0, want) * 1.5, (key, x0)


def test_table_names_are_the_ops_names():
    table = _op_table()
    assert table["relu"][0] == Value(1.0).relu()._op == "ReLU"
    assert table["step"][0] == Value(1.0).heaviside()._op
    assert table["+"][1:3] == (2, 2) and table["sum"][2] == -1
    assert all(table[k][3] for k in ("relu", "tanh", "sigmoid", "step"))
    assert not any(table[k][3] for k in ("exp", "log", "recip", "**k"))


# ---- the harness: every row, every mode ---------------------------------------------------

KEYS = sorted(ROWS)
ALL = {**ROWS, **SPELLINGS}     # the table's ops, and Python's spellings built from them
CASES = [(key, point) for key in KEYS for point in ROWS[key].points]
SPELLING_CASES = [(key, point) for key in sorted(SPELLINGS) for point in SPELLINGS[key].points]


def evaluate(engine, key, point, g=1.5):
    """(value, [gradient of g * op at each operand])."""
    xs = [engine(x) for x in point]
    out = ALL[key].apply(*xs)
    (out * g).backward()
    return out.data, [x.grad for x in xs]


@pytest.mark.parametrize("key, point", [c for c in CASES if c[0] not in NARY] + SPELLING_CASES)
def test_eager_equals_the_reference_bit_for_bit(key, point):
    assert evaluate(Value, key, point) == evaluate(reference.Value, key, point)


@pytest.mark.parametrize("key, point", CASES + SPELLING_CASES)
def test_against_torch_float64(key, point):
    torch = pytest.importorskip("torch")
    value, grads = evaluate(Value, key, point)
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in point]
    out = ALL[key].torch(*ts)
    (out * 1.5).backward()
    assert close(value, out.item(), rel=1e-13, abs_=1e-300), (key, point)
    for g, t in zip(grads, ts):
        assert close(g, t.grad.item(), rel=1e-12, abs_=1e-300), (key, point)


@pytest.mark.parametrize("key, point", CASES + SPELLING_CASES)
def test_against_finite_differences(key, point):
    _, grads = evaluate(Value, key, point)
    f = lambda xs: ALL[key].apply(*[Value(x) for x in xs]).data * 1.5
    for i, g in enumerate(grads):
        h = 1e-6 * max(1.0, abs(point[i]))
        assert close(g, central_difference(f, list(point), i, h), rel=1e-5, abs_=1e-7), \
            (key, point, i)


@pytest.mark.parametrize("key, point", CASES + SPELLING_CASES)
def test_replayed_equals_eager_bit_for_bit(key, point):
    leaves = cgrad.inputs(len(point))
    for leaf, x in zip(leaves, point):   # built where the op is defined
        leaf.data = x
    graph = cgrad.Graph(ALL[key].apply(*leaves) * 1.5, inputs=leaves)
    loss = graph.forward(list(point))
    graph.backward()
    value, grads = evaluate(Value, key, point)
    assert loss == value * 1.5
    assert [x.grad for x in leaves] == grads


@pytest.mark.parametrize("key", sorted(ACTIVATIONS))
def test_as_an_activation_in_a_replayed_layer(key):
    layer = nn.Layer(3, 4, activation=ACTIVATIONS[key])
    xs = cgrad.inputs(8, 3)
    outs = [layer(x) for x in xs]
    graph = cgrad.Graph(cgrad.sum(o * o for row in outs for o in row), inputs=xs,
                        outputs=outs)
    assert graph.n_layers == 1
    X = np.random.RandomState(0).uniform(-2, 2, (8, 3))
    loss = graph.forward(X)
    graph.backward()
    replayed = ([p.grad for p in layer.parameters()], graph.outputs().tolist())
    for p in layer.parameters():
        p.grad = 0.0
    eager = [layer(list(x)) for x in X]
    rebuilt = cgrad.sum(o * o for row in eager for o in row)
    rebuilt.backward()
    assert loss == rebuilt.data
    assert replayed == ([p.grad for p in layer.parameters()],
                        [[o.data for o in row] for row in eager])


@pytest.mark.parametrize("key, point", CASES + SPELLING_CASES)
def test_first_and_second_derivatives(key, point):
    xs = [Value(x) for x in point]
    out = ALL[key].apply(*xs) * 1.5
    firsts = cgrad.grad(out, xs, create_graph=True)
    assert [d.data for d in firsts] == evaluate(Value, key, point)[1]   # backward()'s bits
    for i, first in enumerate(firsts):
        seconds = cgrad.grad(first, xs)
        for j, second in enumerate(seconds):
            f = lambda ys: evaluate(Value, key, ys)[1][i]
            h = 1e-5 * max(1.0, abs(point[j]))
            assert close(second, central_difference(f, list(point), j, h), rel=1e-4,
                         abs_=1e-6), (key, point, i, j)


def grad_outcome(key, point):
    """outcome(), the gradients by cgrad.grad's numbers (no graph recorded)."""
    xs = [Value(x) for x in point]
    try:
        out = ALL[key].apply(*xs)
        return ("ok", out.data, cgrad.grad(out, xs))
    except (ValueError, ZeroDivisionError, OverflowError) as error:
        return ("error", type(error))


@pytest.mark.parametrize("key", sorted(ALL))
def test_grad_numbers_are_backwards_at_every_point_and_edge(key):
    extremes = ROWS[key].extremes if key in ROWS and key not in NARY else []
    for point in ALL[key].points + list(extremes):
        assert same(list(grad_outcome(key, point)), list(outcome(Value, key, point))), \
            (key, point)


@pytest.mark.parametrize("key, point", CASES)
def test_pickled_and_unpickled(key, point):
    xs = [Value(x) for x in point]
    out = ROWS[key].apply(*xs)
    clone = pickle.loads(pickle.dumps(out))
    assert clone.data == out.data and clone._op == out._op
    clone.backward()
    out.backward()
    leaves = [v for v in clone._children if not v._children] if key not in NARY else []
    assert [x.grad for x in xs][:len(leaves)] == [v.grad for v in leaves]


def outcome(engine, key, point):
    try:
        return ("ok",) + evaluate(engine, key, point, g=1.0)
    except (ValueError, ZeroDivisionError, OverflowError) as error:
        return ("error", type(error))


def same(a, b):
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


@pytest.mark.parametrize("key", [k for k in KEYS if k not in NARY and ROWS[k].extremes])
def test_at_the_edges_of_the_floats(key):
    """Each edge input gives the reference's numbers or a Python exception; where cgrad
    raises OverflowError (its rule: no silent inf/NaN from finite inputs) the reference
    went through inf or NaN."""
    for point in ROWS[key].extremes:
        ours, theirs = outcome(Value, key, point), outcome(reference.Value, key, point)
        if ours[0] == "ok" and theirs[0] == "ok":
            assert same(list(ours[1:]), list(theirs[1:])), (key, point, ours, theirs)
        elif ours[0] == "error" and ours[1] is OverflowError:
            assert theirs[0] == "error" or not all(map(math.isfinite, [theirs[1]] + theirs[2])), \
                (key, point, theirs)
        else:
            assert ours == theirs, (key, point, ours, theirs)


@pytest.mark.parametrize("key", [k for k in KEYS if ROWS[k].refused[0]])
def test_outside_the_domain_both_engines_refuse(key):
    points, error = ROWS[key].refused
    for point in points:
        for engine in (Value, reference.Value):
            with pytest.raises(error):
                ROWS[key].apply(*[engine(x) for x in point])
