"""Gradients as Values (cgrad.grad, backward(create_graph=True), hessian, hvp).

Oracles: PyTorch float64 (torch.autograd.grad with create_graph=True) when installed,
finite differences of the first derivative, hand-derived values, and backward() itself
(the recorded gradients must carry the very numbers backward() computes)."""
import random

import numpy as np
import pytest

import cgrad
from cgrad import Value, grad, hessian, hvp, nn, reference
from op_rows import ROWS, arity

try:
    import torch
except ImportError:
    torch = None

# f(x) for every one-input op of the table (tests/op_rows.py), and compositions that
# exercise the recorder: (on cgrad Values, on torch tensors)
COMPOSITES = {
    "relu-times-x": (lambda v: v.relu() * v, lambda t: torch.relu(t) * t),
    "pow-1.5": (lambda v: v ** -1.5, lambda t: t ** -1.5),
    "div": (lambda v: 1 / v, lambda t: 1 / t),
    "powv": (lambda v: v ** v, lambda t: t ** t),
    "rpow": (lambda v: 2 ** v, lambda t: 2 ** t),
    "mul-add": (lambda v: v * v * 3 + v, lambda t: t * t * 3 + t),
    "sum": (lambda v: cgrad.sum([v * v, v, v.exp()]), lambda t: t * t + t + t.exp()),
    "dot": (lambda v: cgrad.dot([v, v * v], [v.tanh(), 2.0], 0.5),
            lambda t: t * t.tanh() + t * t * 2 + 0.5),
    "logsumexp": (lambda v: cgrad.logsumexp([v, v * v, -v]),
                  lambda t: torch.logsumexp(torch.stack([t, t * t, -t]), 0)),
    "max-min": (lambda v: v.max(v * v) + v.min(2.0 - v), lambda t: torch.maximum(t, t * t)
                + torch.minimum(t, 2.0 - t)),
}
UNARY = {**{key: (row.apply, row.torch) for key, row in ROWS.items() if arity(key) == 1},
         **COMPOSITES}
POINTS = [0.3, 0.8, 1.7]


def derivatives(f, x0, order):
    """[f, f', f'', ...] at x0 by cgrad.grad, each a Value differentiated again."""
    x = Value(x0)
    out = [f(x)]
    for _ in range(order):
        out.append(grad(out[-1], x, create_graph=True))
    return [v.data for v in out]


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("x0", POINTS)
def test_second_and_third_derivatives_against_finite_differences(name, x0):
    f = UNARY[name][0]
    h = 1e-5
    d = derivatives(f, x0, 3)
    for k in (2, 3):   # the k-th derivative: central difference of the (k-1)-th
        up, down = derivatives(f, x0 + h, k - 1)[-1], derivatives(f, x0 - h, k - 1)[-1]
        fd = (up - down) / (2 * h)
        assert d[k] == pytest.approx(fd, rel=1e-5, abs=1e-6), (name, k)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("x0", POINTS)
def test_second_and_third_derivatives_against_torch(name, x0):
    f, tf = UNARY[name]
    t = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    want = [tf(t)]
    for _ in range(3):
        if not want[-1].requires_grad:      # a constant: torch has nothing to differentiate
            want.append(torch.zeros((), dtype=torch.float64))
            continue
        (g,) = torch.autograd.grad(want[-1], t, create_graph=True)
        want.append(g)
    got = derivatives(f, x0, 3)
    assert got == pytest.approx([w.item() for w in want], rel=1e-12, abs=1e-12)


def test_relu_second_derivative_is_zero_also_at_the_kink():
    for x0 in (-1.0, 0.0, 2.0):
        x = Value(x0)
        first = grad(x.relu(), x, create_graph=True)
        assert first.data == (1.0 if x0 > 0 else 0.0)
        assert grad(first, x) == 0.0


def random_expression(rng, x, y, lib=cgrad):
    """A random graph over x and y using every op (lib: cgrad, or the torch stand-in)."""
    values = [x, y, x * y, x + 1.0]
    ops = [lambda a, b: a * b, lambda a, b: a + b, lambda a, b: a - b,
           lambda a, b: a.tanh() * b, lambda a, b: (a * a + 1.0).log() + b,
           lambda a, b: a.sigmoid() + b.relu(), lambda a, b: (a * 0.3).exp() * b,
           lambda a, b: a ** 2 + b ** 3, lambda a, b: lib.dot([a, b], [b, a], 0.1),
           lambda a, b: lib.logsumexp([a, b, a * b]), lambda a, b: lib.sum([a, b, 1.0])]
    for _ in range(12):
        a, b = rng.choice(values), rng.choice(values)
        values.append(rng.choice(ops)(a, b))
    return values[-1] + values[-2] * values[-3]


@pytest.mark.parametrize("seed", range(12))
def test_recorded_gradients_carry_backwards_numbers_bit_for_bit(seed):
    rng = random.Random(seed)
    x, y = Value(rng.uniform(-1, 1)), Value(rng.uniform(-1, 1))
    f = random_expression(random.Random(seed), x, y)
    gx, gy = grad(f, [x, y], create_graph=True)
    f.backward()
    assert (gx.data, gy.data) == (x.grad, y.grad)
    assert grad(f, [x, y]) == [x.grad, y.grad]


class ReferenceOps:
    """cgrad's fused ops for the pure-Python reference, composed from its scalar ops."""
    @staticmethod
    def dot(ws, xs, bias):
        return sum((w * x for w, x in zip(ws, xs)), reference.Value(bias))

    @staticmethod
    def sum(values):
        return sum(values)

    @staticmethod
    def logsumexp(values):
        m = max(v.data for v in values)
        return sum((v - m).exp() for v in values).log() + m


def reference_hessian(seed, x0, y0):
    """The Hessian by the reference engine extended the micrograd way: backward(
    create_graph=True) leaves Values in .grad, each differentiated by a plain backward."""
    x, y = reference.Value(x0), reference.Value(y0)
    f = random_expression(random.Random(seed), x, y, ReferenceOps)
    f.backward(create_graph=True)
    rows = []
    for g in (x.grad, y.grad):
        x.grad = y.grad = 0.0
        g.backward()
        rows.append([x.grad, y.grad])
    return rows


def random_hessian(seed):
    """(cgrad's Hessian of random graph `seed` at a random point, that point)."""
    rng = random.Random(seed)
    x0, y0 = rng.uniform(-1, 1), rng.uniform(-1, 1)
    x, y = Value(x0), Value(y0)
    return hessian(random_expression(random.Random(seed), x, y), [x, y]), x0, y0


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_differentiated_twice_against_the_reference(seed):
    H, x0, y0 = random_hessian(seed)
    np.testing.assert_allclose(H, reference_hessian(seed, x0, y0), rtol=1e-10, atol=1e-10)


class TorchOps:
    """cgrad's fused ops for torch tensors (torch's own ops do the rest)."""
    @staticmethod
    def dot(ws, xs, bias):
        return sum((w * x for w, x in zip(ws, xs)), torch.tensor(bias, dtype=torch.float64))

    @staticmethod
    def sum(values):
        return sum(values, torch.tensor(0.0, dtype=torch.float64))

    @staticmethod
    def logsumexp(values):
        return torch.logsumexp(torch.stack(values), 0)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_differentiated_twice_against_torch(seed):
    H, x0, y0 = random_hessian(seed)
    want = torch.autograd.functional.hessian(
        lambda t: random_expression(random.Random(seed), t[0], t[1], TorchOps),
        torch.tensor([x0, y0], dtype=torch.float64))
    np.testing.assert_allclose(H, want.numpy(), rtol=1e-10, atol=1e-10)


def test_newtons_method_solves_a_quadratic_in_one_step():
    # f(x, y) = 3x^2 + 2xy + y^2 - 4x + y: minimum where the gradient vanishes
    x, y = Value(5.0), Value(-7.0)
    f = 3 * x ** 2 + 2 * x * y + y ** 2 - 4 * x + y
    g = np.array(grad(f, [x, y]))
    H = np.array(hessian(f, [x, y]))
    assert H.tolist() == [[6.0, 2.0], [2.0, 2.0]]
    step = np.linalg.solve(H, g)
    x.data, y.data = x.data - step[0], y.data - step[1]
    f2 = 3 * x ** 2 + 2 * x * y + y ** 2 - 4 * x + y
    assert grad(f2, [x, y]) == pytest.approx([0.0, 0.0], abs=1e-12)
    assert (x.data, y.data) == pytest.approx((1.25, -1.75))


def test_hvp_equals_hessian_times_vector():
    rng = random.Random(3)
    xs = [Value(rng.uniform(-1, 1)) for _ in range(4)]
    f = cgrad.sum([(a * b).tanh() for a in xs for b in xs]) + xs[0].exp() * xs[3]
    v = [0.5, -1.0, 2.0, 0.25]
    want = np.array(hessian(f, xs)) @ np.array(v)
    np.testing.assert_allclose(hvp(f, xs, v), want, rtol=1e-13, atol=1e-13)


def test_backward_create_graph_keeps_gradients_as_values():
    x = Value(0.7)
    y = x ** 3
    y.backward(create_graph=True)
    assert x.grad == 3 * 0.7 ** 2 and x.grad_value.data == x.grad
    x.grad_value.backward()          # d/dx (3x^2) = 6x, added to x.grad (as backward does)
    assert x.grad == pytest.approx(3 * 0.49 + 6 * 0.7)


def test_an_input_the_output_does_not_depend_on_gets_zero():
    a, b = Value(1.0), Value(2.0)
    assert grad(a * 3, [a, b]) == [3.0, 0.0]


def test_outputs_and_inputs_that_are_not_values_are_refused_by_name():
    a = Value(1.0)
    with pytest.raises(TypeError, match="outputs must be a Value or a list of Values, got float"):
        grad(3.0, [a])
    with pytest.raises(TypeError, match="inputs must be a Value or a list of Values, got int"):
        grad(a * 2, 5)
    with pytest.raises(TypeError, match="inputs must be Values, got float"):
        grad(a * 2, [a, 1.0])


def test_a_python_backward_cannot_be_recorded():
    x = Value(0.5)
    out = Value(x.data ** 2, (x,), 'sq')
    out._backward = lambda: None
    with pytest.raises(TypeError, match="Python _backward"):
        grad(out * 2, x, create_graph=True)


def gradient_penalty_loss(model, xs, ts):
    """Squared error plus a penalty on d(model)/d(input): a loss made of first
    derivatives, trained by replay."""
    loss = Value(0.0)
    for x, t in zip(xs, ts):
        (y,) = [model(x)]
        dy = grad(y, x, create_graph=True)
        loss = loss + (y - t) ** 2 + 0.1 * cgrad.sum([d * d for d in dy])
    return loss


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_replayed_gradient_penalty_equals_rebuilding_bit_for_bit(activation):
    from cgrad.optim import SGD
    rng = np.random.default_rng(0)
    X, T = rng.uniform(-1, 1, (6, 2)), rng.uniform(-1, 1, 6)
    replayed, rebuilt = nn.MLP(2, [8, 1], activation=activation), \
        nn.MLP(2, [8, 1], activation=activation)
    rebuilt.set_parameters(replayed.get_parameters())
    xs, ts = cgrad.inputs(6, 2), cgrad.inputs(6)
    graph = cgrad.Graph(gradient_penalty_loss(replayed, xs, ts), inputs=(xs, ts))
    opt_replay, opt_rebuild = SGD(replayed.parameters(), lr=0.05), SGD(rebuilt.parameters(), lr=0.05)
    for _ in range(5):
        got = graph.step(X, T, optimizer=opt_replay)
        rows = [[Value(v) for v in row] for row in X.tolist()]
        loss = gradient_penalty_loss(rebuilt, rows, [Value(t) for t in T.tolist()])
        opt_rebuild.zero_grad()
        loss.backward()
        opt_rebuild.step()
        assert got == loss.data
    assert [p.data for p in replayed.parameters()] == [p.data for p in rebuilt.parameters()]


def mlp_hvp_graph(model, n_points):
    """The replayed Hessian-vector product of an MLP's squared error (as the benchmark
    records it): inputs X, targets, v; outputs H v."""
    from cgrad import losses
    params = model.parameters()
    xs, ys, vs = cgrad.inputs(n_points, 2), cgrad.inputs(n_points), cgrad.inputs(len(params))
    loss = losses.mse([model(x) for x in xs], ys)
    grads = grad(loss, params, create_graph=True)
    hv = grad(cgrad.sum([g * v for g, v in zip(grads, vs)]), params, create_graph=True)
    return cgrad.Graph(None, inputs=(xs, ys, vs), outputs=hv, input_grads=False)


def test_mlp_hvp_eager_replayed_and_torch_agree():
    from cgrad import losses
    rng = np.random.default_rng(5)
    X, y = rng.uniform(-1, 1, (6, 2)), rng.uniform(-1, 1, 6)
    model = nn.MLP(2, [5, 5, 1], activation="tanh")
    params = model.parameters()
    graph = mlp_hvp_graph(model, 6)
    for _ in range(2):          # new data and vector each time: the replay follows
        v = rng.standard_normal(len(params))
        loss = losses.mse([model(r) for r in X.tolist()], y.tolist())
        eager = hvp(loss, params, v.tolist())
        assert graph.forward(X, y, v).tolist() == eager
        X, y = X * 0.5 + 0.1, -y
    if torch is not None:       # the last data used above, against torch's double backward
        X, y = X * 2 - 0.2, -y
        net = model.to_torch()
        tp = list(net.parameters())
        tloss = ((net(torch.tensor(X))[:, 0] - torch.tensor(y)) ** 2).mean()
        g = torch.autograd.grad(tloss, tp, create_graph=True)
        tv = torch.tensor(to_torch_layout(model, v))
        pieces, at = [], 0
        for p in tp:
            pieces.append(tv[at:at + p.numel()].reshape(p.shape))
            at += p.numel()
        hv = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, pieces)), tp)
        want = torch.cat([h.reshape(-1) for h in hv]).numpy()
        np.testing.assert_allclose(to_torch_layout(model, eager), want, rtol=1e-9, atol=1e-12)


def to_torch_layout(model, flat):
    """cgrad's parameter order (per neuron: weights, bias) -> torch's (per layer: the
    weight matrix row by row, then the biases)."""
    out, at = [], 0
    for layer in model.layers:
        rows = []
        for neuron in layer.neurons:
            n = len(neuron.w)
            rows.append(flat[at:at + n + 1])
            at += n + 1
        out += [x for row in rows for x in row[:-1]] + [row[-1] for row in rows]
    return np.array(out)
