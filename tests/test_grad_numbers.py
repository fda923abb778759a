"""cgrad.grad without create_graph: numbers from backward()'s own sweep, every node's
grad left as it was.

Oracles: backward() itself (the same numbers bit for bit), PyTorch float64
(torch.autograd.grad), hand-derived values, and the recorded gradients of
create_graph=True where both apply."""
import math
import random

import pytest

import cgrad
from cgrad import Value, grad

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def random_graph(seed, xs):
    """A random expression over the leaves xs, each op of several kinds."""
    rng = random.Random(seed)
    pool = list(xs)
    for _ in range(12):
        a, b = rng.choice(pool), rng.choice(pool)
        kind = rng.randrange(7)
        if kind == 0:
            v = a + b
        elif kind == 1:
            v = a * b
        elif kind == 2:
            v = a.tanh()
        elif kind == 3:
            v = (a * 0.5).exp()
        elif kind == 4:
            v = cgrad.dot([a, b], [b, a], 0.25)
        elif kind == 5:
            v = cgrad.logsumexp([a, b, a * b])
        else:
            v = a.relu() - b / (1.5 + b * b)
        pool.append(v)
    return pool


@pytest.mark.parametrize("seed", range(20))
def test_numbers_equal_backward_and_every_grad_is_kept(seed):
    rng = random.Random(seed)
    xs = [Value(rng.uniform(-1, 1)) for _ in range(3)]
    pool = random_graph(seed, xs)
    f = pool[-1]
    for i, v in enumerate(pool):           # grads the user has, which grad() must keep
        v.grad = 0.125 * i - 1.0
    before = [v.grad for v in pool]
    got = grad(f, pool)
    assert [v.grad for v in pool] == before
    for v in pool:
        v.grad = 0.0
    f.backward()
    assert got == [v.grad for v in pool]     # 0 for the nodes f does not reach
    recorded = grad(f, pool, create_graph=True)
    assert got == [r.data for r in recorded]


@needs_torch
@pytest.mark.parametrize("seed", range(8))
def test_several_outputs_weighted_against_torch(seed):
    rng = random.Random(seed)
    x0 = [rng.uniform(-1, 1) for _ in range(3)]
    xs = [Value(v) for v in x0]
    pool = random_graph(seed, xs)
    outs, weights = pool[-3:], [0.5, -2.0, 3.0]
    got = grad(outs, xs + [pool[5]], grad_outputs=weights)

    ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in x0]

    class T:    # the same graph over tensors
        @staticmethod
        def dot(ws, vs, bias):
            start = torch.tensor(bias, dtype=torch.float64)
            return sum((w * v for w, v in zip(ws, vs)), start)

        @staticmethod
        def logsumexp(values):
            return torch.logsumexp(torch.stack(values), 0)

    tpool = list(ts)
    rng2 = random.Random(seed)
    for _ in range(12):
        a, b = rng2.choice(tpool), rng2.choice(tpool)
        kind = rng2.randrange(7)
        v = [lambda: a + b, lambda: a * b, lambda: a.tanh(), lambda: (a * 0.5).exp(),
             lambda: T.dot([a, b], [b, a], 0.25), lambda: T.logsumexp([a, b, a * b]),
             lambda: torch.relu(a) - b / (1.5 + b * b)][kind]()
        tpool.append(v)
    want = torch.autograd.grad(tpool[-3:], ts + [tpool[5]],
                               grad_outputs=[torch.tensor(w, dtype=torch.float64)
                                             for w in weights], allow_unused=True)
    want = [0.0 if w is None else w.item() for w in want]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_a_python_backward_runs_micrograds_way():
    # an op added micrograd's way: a node built by hand, its chain rule a closure
    x = Value(1.5)
    sq = Value(x.data ** 2, (x,), "square")

    def _backward():
        x.grad += 2 * x.data * sq.grad
    sq._backward = _backward
    f = sq * 3 + x
    assert grad(f, x) == 3 * 2 * 1.5 + 1
    assert x.grad == 0.0 and sq.grad == 0.0 and f.grad == 0.0


@needs_torch
def test_no_recipe_overflow_where_backward_gives_numbers():
    # create_graph=True builds -0.5 * a * a for gelu's derivative, which overflows here;
    # backward() (and torch) give 1 and 0
    for a0, want in [(1.3e155, 1.0), (-1e200, 0.0)]:
        a = Value(a0)
        out = a.gelu()
        t = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
        (tg,) = torch.autograd.grad(torch.nn.functional.gelu(t), t)
        assert grad(out, a) == tg.item() == want
        out.backward()
        assert a.grad == want


def test_a_first_contribution_keeps_its_sign_as_torch_and_recording_do():
    x = Value(1.0)
    y = x * -0.0
    assert math.copysign(1.0, grad(y, x)) == -1.0
    assert math.copysign(1.0, grad(y, x, create_graph=True).data) == -1.0


def test_outputs_and_inputs_that_are_leaves_or_repeated():
    x, y = Value(2.0), Value(3.0)
    x.grad = y.grad = 5.0       # not the gradient: 0 for an input the output ignores
    assert grad(x, [x, y]) == [1.0, 0.0]
    assert grad(x * 2 + 1, [y, x]) == [0.0, 2.0]
    x.grad = y.grad = 0.0
    assert grad([x, x * y], [x, x, y], grad_outputs=[2.0, Value(0.5)]) == [3.5, 3.5, 1.0]


def test_an_overflow_raises_as_backward_does_and_restores_every_grad():
    a, b = Value(1e200), Value(1e-200)
    z = (a * b) * 1e200                 # finite forward; d z / d b = a * 1e200 overflows
    a.grad, b.grad = 7.0, 8.0
    with pytest.raises(OverflowError) as got:
        grad(z, [a, b])
    assert (a.grad, b.grad, z.grad) == (7.0, 8.0, 0.0)
    with pytest.raises(OverflowError) as want:
        z.backward()
    assert str(got.value) == str(want.value)


def test_an_exception_in_a_python_backward_propagates_and_restores_grads():
    x = Value(0.5)
    out = Value(x.data, (x,), "boom")

    def _backward():
        x.grad += 1.0
        raise ValueError("inside the closure")
    out._backward = _backward
    x.grad = 4.0
    with pytest.raises(ValueError, match="inside the closure"):
        grad(out * 2, x)
    assert x.grad == 4.0


def test_a_deep_chain():
    x = Value(1.0)
    y = x
    for _ in range(200_000):
        y = y * 1.0 + 0.0
    assert grad(y, x) == 1.0


@pytest.mark.parametrize("create_graph", [False, True])
def test_grad_outputs_as_numbers_of_any_kind_or_refused_by_name(create_graph):
    import numpy as np
    x = Value(2.0)
    y = x * x                               # dy/dx = 4
    def weighted(w):
        g = grad(y, x, grad_outputs=w, create_graph=create_graph)
        return g.data if create_graph else g
    for w in (3, 3.0, np.float32(3), np.array(3.0), np.array([3.0]), [np.int64(3)],
              (Value(3.0),)):
        assert weighted(w) == 12.0, w
    for w in ("3", [None], [1j], object(), np.array(["3"])):
        with pytest.raises(TypeError, match="grad_outputs must be real numbers or Values"):
            weighted(w)
    with pytest.raises(ValueError, match="1 outputs but 2 grad_outputs"):
        weighted([1.0, 2.0])


def test_log_at_a_subnormal_gives_backwards_number():
    # the recorded recipe takes reciprocal(a), which overflows; backward() takes g / a
    a = Value(5e-324)
    y = a.log() * 1e-300
    assert grad(y, a) == 1e-300 / 5e-324
    with pytest.raises(OverflowError, match="recip"):
        grad(y, a, create_graph=True)
