"""Losses, optimizers, gradcheck, viz, datasets and the demo CLI."""
import math
import random
import subprocess
import sys

import numpy as np
import pytest

from cgrad import Value, losses
from cgrad.datasets import load_digits, make_moons
from cgrad import GradcheckError, gradcheck
from cgrad.optim import SGD, Adam
from cgrad.viz import draw_dot, dot_source, trace


def test_mse_and_hinge_by_hand():
    p = [Value(0.5), Value(-1.0)]
    assert losses.mse(p, [1.0, 1.0]).data == (0.25 + 4.0) / 2
    assert losses.hinge([Value(0.5), Value(-2.0)], [1, -1]).data == (0.5 + 0.0) / 2


def test_binary_cross_entropy_is_stable_and_correct():
    z = [Value(0.3), Value(-800.0), Value(800.0)]
    loss = losses.binary_cross_entropy_with_logits(z, [1, 1, 0])
    expected = (math.log1p(math.exp(-0.3)) + 800.0 + 800.0) / 3
    assert loss.data == pytest.approx(expected, rel=1e-14)
    loss.backward()
    assert z[1].grad == pytest.approx(-1 / 3)


def test_cross_entropy_matches_a_hand_softmax_and_survives_big_logits():
    z = [1.0, 2.0, 0.5]
    expected = math.log(sum(math.exp(v) for v in z)) - z[1]
    assert losses.cross_entropy([Value(v) for v in z], 1).data == pytest.approx(expected, rel=1e-14)
    assert losses.cross_entropy([Value(1000.0), Value(0.0)], 0).data == pytest.approx(0.0, abs=1e-300)
    logits = [Value(v) for v in z]
    losses.cross_entropy(logits, 1).backward()
    soft = [math.exp(v) / sum(math.exp(u) for u in z) for v in z]
    assert [v.grad for v in logits] == pytest.approx([soft[0], soft[1] - 1, soft[2]], rel=1e-12)


@pytest.mark.parametrize("loss", [
    lambda a, b: losses.mse([a, b], [0.5, -0.5]),
    lambda a, b: losses.hinge([a, b], [1, -1]),
    lambda a, b: losses.binary_cross_entropy_with_logits([a, b], [1, 0]),
    lambda a, b: losses.softmax_cross_entropy([[a, b], [b, a]], [0, 0]),
    lambda a, b: losses.softmax_cross_entropy([[a, b], [b, a]], [[0.25, 0.75], [1, 0]]),
])
def test_loss_gradients_pass_gradcheck(loss):
    assert gradcheck(loss, [0.3, -0.7])


@pytest.mark.parametrize("seed", range(40))
def test_l2_gives_the_numbers_of_micrograds_sum_of_squares(seed):
    """losses.l2 is one dot of the parameters with themselves; micrograd's demo writes
    alpha * sum((p*p for p in model.parameters())).  The loss and every gradient agree
    bit for bit, with the parameters also used by the model (and one used again)."""
    from cgrad import nn
    rng = random.Random(seed)
    nin = rng.randint(1, 4)
    nouts = [rng.randint(1, 5) for _ in range(rng.randint(0, 2))] + [1]
    X = [[rng.uniform(-3, 3) for _ in range(nin)] for _ in range(rng.randint(1, 6))]
    y = [rng.choice([-1, 1]) for _ in X]
    alpha = rng.choice([1e-4, 0.3, 7.5])
    results = []
    for regularizer in (lambda ps: losses.l2(ps, alpha),
                        lambda ps: alpha * sum((p * p for p in ps))):
        random.seed(seed)
        model = nn.MLP(nin, nouts)
        params = model.parameters()
        loss = losses.hinge([model(x) for x in X], y) + regularizer(params) + params[0] * 0.5
        loss.backward()
        results.append([loss.data] + [p.grad for p in params])
    assert results[0] == results[1]


def _moons_loss(model, X, y):
    return losses.hinge([model(x) for x in X], y)


def test_module_zero_grad_zeroes_what_backward_gave_and_the_next_backward_starts_over():
    from cgrad import nn
    X, y = make_moons(20, noise=0.1, seed=3)
    X, y = X.tolist(), (2 * y - 1).tolist()
    random.seed(4)
    model = nn.MLP(2, [5, 1])
    _moons_loss(model, X, y).backward()
    first = [p.grad for p in model.parameters()]
    assert any(g != 0.0 for g in first)
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())
    _moons_loss(model, X, y).backward()
    assert [p.grad for p in model.parameters()] == first   # not first + first


def test_module_zero_grad_reaches_a_replayed_graph_that_holds_the_grads():
    """A Graph ahead of its nodes holds the parameters' grads: zero_grad must take them
    back first and the Graph must read the zeros before its next backward."""
    import cgrad
    from cgrad import nn
    X, y = make_moons(8, noise=0.1, seed=5)
    Y = (2 * y - 1).astype(float)
    random.seed(6)
    model = nn.MLP(2, [4, 1])
    xs, ys = cgrad.inputs(8, 2), cgrad.inputs(8)
    graph = cgrad.Graph(losses.hinge([model(x) for x in xs], ys), inputs=(xs, ys))
    graph.forward(X, Y)
    graph.backward()
    once = [p.grad for p in model.parameters()]
    graph.backward()                                           # grads accumulate: twice
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())
    graph.backward()
    assert [p.grad for p in model.parameters()] == once
    random.seed(6)
    eager = nn.MLP(2, [4, 1])
    _moons_loss(eager, X.tolist(), Y.tolist()).backward()
    assert once == [p.grad for p in eager.parameters()]


def test_module_zero_grad_drops_gradients_kept_as_values_and_sets_other_objects():
    from cgrad import nn

    class Custom:
        grad = 5.0

    class Model(nn.Module):
        def __init__(self):
            self.w, self.other = Value(2.0), Custom()

        def parameters(self):
            return [self.w, self.other]

    model = Model()
    (model.w * model.w * model.w).backward(create_graph=True)
    assert model.w.grad == 12.0 and model.w.grad_value.data == 12.0
    model.zero_grad()
    assert model.w.grad == 0.0 and model.other.grad == 0
    assert not hasattr(model.w, "grad_value")


def test_losses_refuse_bad_labels():
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        losses.mse([Value(1), Value(2)], [1])
    with pytest.raises(ValueError, match="-1 or \\+1"):
        losses.hinge([Value(1)], [0])
    with pytest.raises(ValueError, match="out of range"):
        losses.cross_entropy([Value(1), Value(2)], 2)
    with pytest.raises(ValueError, match="3 entries for 2 logits"):
        losses.cross_entropy([Value(1), Value(2)], [0, 1, 0])
    with pytest.raises(TypeError, match="class index"):
        losses.cross_entropy([Value(1), Value(2)], "1")


def test_cross_entropy_takes_one_hot_rows_of_numbers_or_values():
    z = [1.0, 2.0, 0.5]
    by_index = losses.cross_entropy([Value(v) for v in z], 1)
    for row in ([0, 1, 0], [Value(0), Value(1), Value(0)]):
        assert losses.cross_entropy([Value(v) for v in z], row).data == \
            pytest.approx(by_index.data, rel=1e-15)


def test_gradcheck_catches_a_wrong_gradient():
    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(lambda a: Value(a.data ** 2, (a,), 'fake square'), [1.5])


def params_with_grads():
    ps = [Value(0.5), Value(-1.5), Value(2.0)]
    for p, g in zip(ps, [0.1, -0.2, 0.3]):
        p.grad = g
    return ps


def test_sgd_with_momentum_and_decay_matches_the_written_out_update():
    ps = params_with_grads()
    opt = SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01)
    data, v = [0.5, -1.5, 2.0], [0.0] * 3
    for _ in range(3):
        opt.step()
        for i, g in enumerate([0.1, -0.2, 0.3]):
            g = g + 0.01 * data[i]
            v[i] = 0.9 * v[i] + g
            data[i] -= 0.1 * v[i]
    assert [p.data for p in ps] == data
    opt.zero_grad()
    assert [p.grad for p in ps] == [0.0] * 3


def test_adam_matches_the_written_out_update():
    ps = params_with_grads()
    opt = Adam(ps, lr=0.01, weight_decay=0.1)
    data, m, v = [0.5, -1.5, 2.0], [0.0] * 3, [0.0] * 3
    for t in range(1, 4):
        opt.step()
        for i, g in enumerate([0.1, -0.2, 0.3]):
            g = g + 0.1 * data[i]
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            denom = math.sqrt(v[i]) / math.sqrt(1 - 0.999 ** t) + 1e-8
            data[i] -= (0.01 / (1 - 0.9 ** t)) * m[i] / denom
    assert [p.data for p in ps] == pytest.approx(data, rel=1e-15)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_over_many_parameters_is_the_written_out_update_bit_for_bit(weight_decay):
    # 150 parameters: several blocks of the vectorized update, and a ragged tail
    rng = random.Random(3)
    ps = [Value(rng.uniform(-2, 2)) for _ in range(150)]
    data, m, v = [p.data for p in ps], [0.0] * 150, [0.0] * 150
    opt = Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    for t in range(1, 4):
        grads = [rng.uniform(-1, 1) for _ in ps]
        for p, g in zip(ps, grads):
            p.grad = g
        opt.step()
        step_size = 0.01 / (1.0 - 0.9 ** t)
        bias2_sqrt = math.sqrt(1.0 - 0.999 ** t)
        for i, g in enumerate(grads):
            if weight_decay:
                g = g + weight_decay * data[i]
            m[i] = 0.9 * m[i] + (1.0 - 0.9) * g
            v[i] = 0.999 * v[i] + (1.0 - 0.999) * g * g
            data[i] = data[i] - step_size * m[i] / (math.sqrt(v[i]) / bias2_sqrt + 1e-8)
        assert [p.data for p in ps] == data, t


def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    ps = params_with_grads()
    ts = torch.tensor([0.5, -1.5, 2.0], dtype=torch.float64, requires_grad=True)
    opt, topt = Adam(ps, lr=0.05), torch.optim.Adam([ts], lr=0.05)
    for _ in range(5):
        ts.grad = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
        opt.step(), topt.step()
    assert [p.data for p in ps] == pytest.approx(ts.tolist(), rel=1e-13)


@pytest.mark.parametrize("make", [SGD, Adam])
def test_optimizer_refuses_a_parameter_twice(make):
    ps = [Value(float(i)) for i in range(1000)]
    with pytest.raises(ValueError, match="appears twice"):
        make(ps + [ps[617]])
    make(ps + [Value(617.0)])           # equal numbers are different parameters


@pytest.mark.parametrize("make", [SGD, Adam])
def test_optimizer_finds_a_repeat_among_parameters_far_apart(make):
    # The repeat check keeps a bit per 16 bytes of the range the nodes span, or a hash
    # table when that range is sparse: here 2 + 3 parameters around 400k other Values.
    first = [Value(1.0), Value(2.0)]
    between = [Value(0.0) for _ in range(400_000)]
    last = [Value(3.0), Value(4.0), Value(5.0)]
    with pytest.raises(ValueError, match="appears twice"):
        make(first + last + [first[1]])
    with pytest.raises(ValueError, match="appears twice"):
        make(first + last + [last[2]])
    make(first + last)
    make(first + between[::1000] + last)
    del between


def test_optimizer_refuses_non_values():
    with pytest.raises(TypeError, match="cgrad Values"):
        SGD([1.0, 2.0])


@pytest.mark.parametrize("make, error, words", [
    (lambda ps: SGD(ps, lr=-0.1), ValueError, "lr must be finite and >= 0"),
    (lambda ps: SGD(ps, lr=float('nan')), ValueError, "lr must be"),
    (lambda ps: SGD(ps, lr='fast'), TypeError, "lr must be a real number"),
    (lambda ps: SGD(ps, momentum=-1), ValueError, "momentum"),
    (lambda ps: Adam(ps, betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be in \[0, 1\)"),
    (lambda ps: Adam(ps, betas=0.9), ValueError, "a pair"),
    (lambda ps: Adam(ps, eps=0), ValueError, "eps must be > 0"),
    (lambda ps: Adam(ps, weight_decay=float('inf')), ValueError, "weight_decay"),
])
def test_optimizer_refuses_bad_hyperparameters(make, error, words):
    with pytest.raises(error, match=words):
        make([Value(1.0)])


def test_a_bad_learning_rate_set_between_steps_is_caught_before_the_update():
    p = Value(1.0)
    p.grad = 0.5
    opt = SGD([p], lr=0.1)
    opt.step()
    assert p.data == 1.0 - 0.1 * 0.5
    opt.lr = float('nan')  # e.g. a schedule gone wrong
    with pytest.raises(ValueError, match="lr must be"):
        opt.step()
    assert p.data == 1.0 - 0.1 * 0.5


def test_trace_and_dot_source():
    a, b = Value(2.0, label='a'), Value(-3.0, label='b')
    c = a * b
    c.label = 'c'
    nodes, edges = trace(c)
    assert nodes == {a, b, c} and edges == {(a, c), (b, c)}
    src = dot_source(c)
    assert src.startswith('digraph') and '{ c | data -6.0000 | grad 0.0000 }' in src
    assert f'{id(a)} -> "{id(c)}*"' in src


def test_draw_dot_with_and_without_graphviz(monkeypatch):
    c = Value(2.0, label='x') * 3
    graphviz = pytest.importorskip("graphviz")   # in [test]; the no-graphviz case follows
    out = draw_dot(c)
    assert isinstance(out, graphviz.Source) and 'digraph' in out.source
    monkeypatch.setitem(sys.modules, 'graphviz', None)  # as if not installed
    assert isinstance(draw_dot(c), str)


def test_trace_handles_deep_graphs():
    y = x = Value(1.0)
    for _ in range(5000):
        y = y + 1
    nodes, _ = trace(y)
    assert len(nodes) == 10001


def test_make_moons_matches_scikit_learn_when_installed():
    X, y = make_moons(100, noise=0.1, seed=0)
    assert X.shape == (100, 2) and set(y) == {0, 1}
    sk = pytest.importorskip("sklearn.datasets")
    X2, y2 = sk.make_moons(100, noise=0.1, random_state=0)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)


def test_digits_loader():
    pytest.importorskip("sklearn")
    X_train, y_train, X_test, y_test = load_digits()
    assert X_train.shape[1] == 64 and len(X_train) + len(X_test) == 1797
    assert X_train.max() <= 1.0 and set(y_test) <= set(range(10))
    digits = pytest.importorskip("sklearn.datasets").load_digits()   # read through sklearn
    X, y = np.vstack([X_train, X_test]), np.concatenate([y_train, y_test])
    order = np.random.RandomState(0).permutation(1797)
    n_test = len(X_test)
    want = np.concatenate([order[n_test:], order[:n_test]])
    assert np.array_equal(X, digits.data[want] / 16.0) and np.array_equal(y, digits.target[want])


def test_demo_cli_runs_end_to_end():
    out = subprocess.run([sys.executable, "-m", "cgrad", "demo", "--steps", "3",
                          "--compare-steps", "1"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "step   0  loss 0.895844" in out.stdout and "x faster" in out.stdout


def test_demo_cli_refuses_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "cgrad", "demo", "--steps", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--steps must be >= 1" in out.stderr


def test_demo_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "demo.png"
    out = subprocess.run([sys.executable, "-m", "cgrad", "demo", "--steps", "2",
                          "--compare-steps", "0", "--plot", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
