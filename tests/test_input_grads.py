"""Input leaves' gradients on demand: a Graph's first layer skips them in backward and
computes them (the same kernel, the same order) when Python next looks at a node.
Whatever happens in between (an optimizer step in the plan or on the nodes, Python
writing a parameter, another Graph over the same model, a second backward, a new
batch), what Python reads is what backward() over the rebuilt graph gives, bit for bit."""
import math
import pickle
import random
import re

import numpy as np
import pytest

import cgrad
from cgrad import Graph, Value, losses, nn
from cgrad.optim import SGD, Adam

NIN, NOUTS, BATCH = 11, [7, 3], 6


def twins():
    random.seed(5)
    first = nn.MLP(NIN, NOUTS)
    random.seed(5)
    return first, nn.MLP(NIN, NOUTS)


def batch(seed):
    rng = np.random.RandomState(seed)
    return rng.uniform(-1, 1, (BATCH, NIN)), np.eye(NOUTS[-1])[rng.randint(0, 3, BATCH)]


def recorded(model, threads=1, extra=None):
    xs, ys = cgrad.inputs(BATCH, NIN), cgrad.inputs(BATCH, NOUTS[-1])
    loss = losses.softmax_cross_entropy([model(x) for x in xs], ys)
    if extra:
        loss = loss + extra(xs)
    return xs, ys, Graph(loss, inputs=(xs, ys), threads=threads)


def eager(model, X, one_hot, extra=None):
    rows = [[Value(v) for v in r] for r in X.tolist()]
    targets = [[Value(v) for v in r] for r in one_hot.tolist()]
    loss = losses.softmax_cross_entropy([model(r) for r in rows], targets)
    if extra:
        loss = loss + extra(rows)
    return loss, rows, targets


def grads(rows):
    return [v.grad for row in rows for v in row]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("make_opt", [lambda ps: Adam(ps, lr=0.05),
                                      lambda ps: SGD(ps, lr=0.1, momentum=0.9)])
def test_read_after_steps_whose_update_ran_in_the_plan(threads, make_opt):
    replayed, rebuilt = twins()
    xs, ys, graph = recorded(replayed, threads)
    assert graph._deferred_input_layers() == 1
    opt_r, opt_e = make_opt(replayed.parameters()), make_opt(rebuilt.parameters())
    for step in range(4):
        X, one_hot = batch(step)
        got = graph.step(X, one_hot, optimizer=opt_r)
        loss, rows, targets = eager(rebuilt, X, one_hot)
        opt_e.zero_grad()
        loss.backward()
        opt_e.step()
        assert got == loss.data
        if step % 2:   # read every other step: unread ones are dropped with the batch
            assert grads(xs) == grads(rows)
            assert grads(ys) == grads(targets)
            assert any(g != 0.0 for g in grads(xs))
    assert [p.data for p in replayed.parameters()] == [p.data for p in rebuilt.parameters()]


def test_a_second_backward_adds_to_them_as_eagerly():
    replayed, rebuilt = twins()
    xs, ys, graph = recorded(replayed)
    X, one_hot = batch(1)
    graph.forward(X, one_hot)
    graph.backward()
    graph.backward()           # leaf grads accumulate: the unread first ones included
    loss, rows, _ = eager(rebuilt, X, one_hot)
    loss.backward()
    loss.backward()
    assert grads(xs) == grads(rows)


def test_a_new_batch_without_backward_reads_fresh_leaves():
    replayed, _ = twins()
    xs, ys, graph = recorded(replayed)
    graph.step(*batch(0), optimizer=Adam(replayed.parameters(), lr=0.05))
    graph.forward(*batch(1))   # fresh leaves, as the rebuilt graph's would be
    assert all(g == 0.0 for g in grads(xs))


def one_step_and_its_eager_twin(seed, make_opt):
    """A Graph's step on a batch (input grads not read yet), and the rebuilt graph's
    backward() on it: (the replayed model, its input leaves, the rebuilt rows)."""
    replayed, rebuilt = twins()
    xs, ys, graph = recorded(replayed)
    X, one_hot = batch(seed)
    graph.step(X, one_hot, optimizer=make_opt(replayed.parameters()))
    loss, rows, _ = eager(rebuilt, X, one_hot)
    loss.backward()
    return replayed, xs, rows


def test_python_writing_a_parameter_first_changes_nothing_read():
    replayed, xs, rows = one_step_and_its_eager_twin(2, lambda ps: SGD(ps, lr=0.1))
    replayed.layers[0].neurons[0].w[0].data = 123.0   # after the step, before the read
    assert grads(xs) == grads(rows)


def test_an_optimizer_on_the_nodes_runs_after_they_are_computed():
    class PlainSGD:   # not cgrad's: its update runs on the nodes, after the plan syncs
        def __init__(self, params):
            self.params = list(params)

        def zero_grad(self):
            for p in self.params:
                p.grad = 0.0

        def step(self):
            for p in self.params:
                p.data -= 0.1 * p.grad

    _, xs, rows = one_step_and_its_eager_twin(3, PlainSGD)
    assert grads(xs) == grads(rows)


def test_another_graph_over_the_model_running_first_changes_nothing_read():
    replayed, xs, rows = one_step_and_its_eager_twin(4, lambda ps: Adam(ps, lr=0.05))
    xt = cgrad.inputs(3, NIN)
    predict = Graph(inputs=xt, outputs=[replayed(x) for x in xt])
    predict.forward(batch(9)[0][:3])
    assert grads(xs) == grads(rows)
    # and pickling reads them too
    assert pickle.loads(pickle.dumps(xs[2][3])).grad == rows[2][3].grad


def test_inputs_another_step_reads_are_computed_in_backward():
    def extra(xs):   # a penalty on the inputs: other steps add to their grads too
        return 0.5 * cgrad.sum([v * v for v in xs[0]])

    replayed, rebuilt = twins()
    xs, ys, graph = recorded(replayed, extra=extra)
    assert graph.n_layers == 2 and graph._deferred_input_layers() == 0
    X, one_hot = batch(5)
    graph.forward(X, one_hot)
    graph.backward()
    loss, rows, _ = eager(rebuilt, X, one_hot, extra)
    loss.backward()
    assert grads(xs) == grads(rows)


def test_input_grads_false_leaves_them_at_zero():
    replayed, _ = twins()
    xs, ys = cgrad.inputs(BATCH, NIN), cgrad.inputs(BATCH, NOUTS[-1])
    loss = losses.softmax_cross_entropy([replayed(x) for x in xs], ys)
    graph = Graph(loss, inputs=(xs, ys), input_grads=False)
    assert graph._deferred_input_layers() == 0
    graph.step(*batch(6), optimizer=Adam(replayed.parameters(), lr=0.05))
    assert all(g == 0.0 for g in grads(xs) + grads(ys))


def test_input_gradients_that_stay_finite_wait_until_looked_at():
    random.seed(1)
    model = nn.MLP(2, [4, 1], activation='linear')
    xs = cgrad.inputs(2, 2)
    graph = Graph(cgrad.sum([model(x) for x in xs]), inputs=xs)
    graph.forward(np.array([[0.5, 1.0], [-1.0, 2.0]]))
    graph.backward()
    assert graph._pending_input_layers() == 1
    hidden, (out,) = model.layers[0].neurons, model.layers[1].neurons
    want = [sum(out.w[j].data * n.w[i].data for j, n in enumerate(hidden))
            for i in range(2)]   # d(sum of outputs)/dx, a linear model's, per example
    assert grads(xs) == pytest.approx(want * 2, rel=1e-15)
    assert graph._pending_input_layers() == 0   # looking computed them


@pytest.fixture(params=["portable", "avx512"])
def widest_vectors(request):
    """Each copy of the loops this CPU runs (the portable one forced)."""
    from cgrad._replay import _limit_vectors
    _limit_vectors(request.param)
    yield request.param
    _limit_vectors("avx512")


@pytest.mark.parametrize("weight", [1e300, 1e200, 1e150, float("inf"), float("nan")])
def test_an_input_gradient_that_overflows_raises_as_eagerly(weight, widest_vectors):
    # weights of 1e300 on an input of 0 leave forward finite (the loss's scale is
    # tiny) and the weight gradients 0, while g * w overflows (at 1e150, every sum
    # stays finite): backward computes these input gradients at once, not on demand
    # (a late sum has no step left to raise in), and raises where the rebuilt graph's
    # backward() raises
    X = [[0.0, 1.0], [0.0, 2.0]]
    twins = []
    for _ in range(2):
        random.seed(1)
        model = nn.MLP(2, [4, 1], activation='linear')
        for n in model.layers[0].neurons:
            n.w[0].data = weight
        twins.append(model)
    replayed, rebuilt = twins
    xs = cgrad.inputs(2, 2)
    graph = Graph(cgrad.sum([replayed(x) * 1e300 for x in xs]), inputs=xs)
    assert graph._deferred_input_layers() == 1
    leaves = [[Value(v) for v in row] for row in X]
    want = cgrad.sum([rebuilt(x) * 1e300 for x in leaves])
    try:
        want.backward()
        error = None
    except OverflowError as raised:
        error = raised
    # eager's nodes settled first: from here to backward() nothing sends the graph back
    # to read its nodes, so backward() meets the batch as forward() loaded it
    assert bits([graph.forward(np.array(X))]) == bits([want.data])
    if error is not None:
        with pytest.raises(OverflowError, match=re.escape(str(error))):
            graph.backward()
        return
    graph.backward()
    assert graph._pending_input_layers() == 0   # computed at once
    assert weight not in (1e300, 1e200)
    assert bits(grads(xs)) == bits([v.grad for row in leaves for v in row])
    assert bits([p.grad for p in replayed.parameters()]) == \
        bits([p.grad for p in rebuilt.parameters()])


def bits(numbers):
    """The numbers, NaN as one (eager and the kernels may give NaNs other signs)."""
    return ["nan" if math.isnan(x) else x for x in numbers]
