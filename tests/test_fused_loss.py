"""The softmax cross-entropy rows of a replayed loss, each run as one step
(csrc/fused_loss.c): every number bit for bit the eager graph's, every node's included,
and errors as eager's."""
import math
import random
import re
import struct

import numpy as np
import pytest

import cgrad
from cgrad import Graph, Value, losses, nn
from cgrad.optim import SGD, Adam


def twins(*args, **kwargs):
    random.seed(5)
    first = nn.MLP(*args, **kwargs)
    random.seed(5)
    return first, nn.MLP(*args, **kwargs)


def batch(seed, size, nin, classes, soft, scale):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-scale, scale, (size, nin))
    if soft:   # rows of class probabilities, not one-hot
        T = rng.uniform(0, 1, (size, classes))
        return X, T / T.sum(axis=1, keepdims=True)
    return X, np.eye(classes)[rng.randint(0, classes, size)]


def paired_nodes(a, b):
    """The nodes of two graphs built alike, in pairs, each once."""
    seen, stack = set(), [(a, b)]
    while stack:
        x, y = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x, y
        kids_x, kids_y = x._children, y._children
        assert len(kids_x) == len(kids_y)
        stack.extend(zip(kids_x, kids_y))


def eager_step(model, opt, X, T):
    rows = [[Value(v) for v in row] for row in X.tolist()]
    targets = [[Value(v) for v in row] for row in T.tolist()]
    loss = losses.softmax_cross_entropy([model(r) for r in rows], targets)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss, rows, targets


@pytest.mark.parametrize("classes, soft, scale", [
    (3, False, 1.0),
    (10, True, 1.0),
    (40, False, 30.0),      # logits far apart: softmax terms that underflow to 0
])
@pytest.mark.parametrize("input_grads", [True, False])
def test_recorded_rows_run_fused_and_every_node_is_eagers(classes, soft, scale, input_grads):
    replayed, rebuilt = twins(7, [9, classes])
    size = 6
    xs, ys = cgrad.inputs(size, 7), cgrad.inputs(size, classes)
    loss = losses.softmax_cross_entropy([replayed(x) for x in xs], ys)
    graph = Graph(loss, inputs=(xs, ys), input_grads=input_grads)
    assert graph._fused_loss_rows() == size
    opt_replay, opt_rebuild = Adam(replayed.parameters(), lr=0.05), \
        Adam(rebuilt.parameters(), lr=0.05)
    parameters = {id(p) for p in replayed.parameters()}   # stepped since: below
    input_leaves = {id(v) for row in xs + ys for v in row}
    for step in range(4):
        X, T = batch(step, size, 7, classes, soft, scale)
        got = graph.step(X, T, optimizer=opt_replay)
        want, _, _ = eager_step(rebuilt, opt_rebuild, X, T)
        assert got == want.data
        compared = 0
        for a, b in paired_nodes(loss, want):
            if id(a) in parameters:
                continue
            if not a._children and id(a) not in input_leaves:
                continue   # a constant: replay adds to its gradient run after run
            if not input_grads and id(a) in input_leaves:
                assert a.grad == 0.0       # input gradients are not computed
                continue
            assert (a.data, a.grad) == (b.data, b.grad), (step, a._op)
            compared += 1
        assert compared > size * (2 * classes + 4)   # the loss's nodes and the layers'
    assert [p.data for p in replayed.parameters()] == [p.data for p in rebuilt.parameters()]
    assert [p.grad for p in replayed.parameters()] == [p.grad for p in rebuilt.parameters()]


@pytest.mark.parametrize("threads", [1, 2])
def test_copied_rows_run_fused_and_bit_for_bit(threads):
    replayed, rebuilt = twins(5, [8, 4])
    step = cgrad.compile(lambda xs, ys: losses.softmax_cross_entropy(
        [replayed(x) for x in xs], ys), dynamic=True, threads=threads)
    opt_replay, opt_rebuild = SGD(replayed.parameters(), lr=0.3, momentum=0.9), \
        SGD(rebuilt.parameters(), lr=0.3, momentum=0.9)
    for size in (9, 4, 9):
        X, T = batch(size, size, 5, 4, True, 2.0)
        got = step.step(X, T, optimizer=opt_replay)
        want, _, _ = eager_step(rebuilt, opt_rebuild, X, T)
        assert got == want.data
        assert step.graphs[(X.shape, T.shape)]._fused_loss_rows() == size
    assert [p.data for p in replayed.parameters()] == [p.data for p in rebuilt.parameters()]


def test_rows_whose_logits_are_read_elsewhere_run_step_by_step():
    # A penalty on the logits adds to their gradients at its own place in the sweep:
    # running a row at once would move the row's contributions past it.
    replayed, rebuilt = twins(4, [6, 3])

    def loss_of(model, rows, targets):
        scores = [model(r) for r in rows]
        return losses.softmax_cross_entropy(scores, targets) \
            + 1e-2 * cgrad.sum([z * z for row in scores for z in row])

    xs, ys = cgrad.inputs(5, 4), cgrad.inputs(5, 3)
    graph = Graph(loss_of(replayed, xs, ys), inputs=(xs, ys))
    assert graph.n_layers == 2 and graph._fused_loss_rows() == 0
    opt_replay, opt_rebuild = SGD(replayed.parameters(), lr=0.1), SGD(rebuilt.parameters(), lr=0.1)
    for step in range(3):
        X, T = batch(step, 5, 4, 3, False, 1.0)
        got = graph.step(X, T, optimizer=opt_replay)
        want = loss_of(rebuilt, X.tolist(), T.tolist())
        opt_rebuild.zero_grad()
        want.backward()
        opt_rebuild.step()
        assert got == want.data
    assert [p.data for p in replayed.parameters()] == [p.data for p in rebuilt.parameters()]


def last_layer_reading_feature_0(model):
    """Logits equal to input feature 0 (every weight 0 but that one, 1.0)."""
    for n in model.layers[-1].neurons:
        for i, w in enumerate(n.w):
            w.data = 1.0 if i == 0 else 0.0
        n.b.data = 0.0


@pytest.mark.parametrize("blow_up", ["forward", "backward"])
def test_a_row_that_overflows_fails_as_eagerly(blow_up):
    replayed, rebuilt = twins(3, [2])
    for model in (replayed, rebuilt):
        last_layer_reading_feature_0(model)
    scale = 1e10 if blow_up == "backward" else 1.0

    def loss_of(model, rows, targets):
        return losses.softmax_cross_entropy([model(r) for r in rows], targets) * scale

    xs, ys = cgrad.inputs(3, 3), cgrad.inputs(3, 2)
    graph = Graph(loss_of(replayed, xs, ys), inputs=(xs, ys))
    assert graph._fused_loss_rows() == 3
    X = np.zeros((3, 3))
    T = np.eye(2)[[0, 1, 0]]
    if blow_up == "forward":      # dot(t, z) = 1e300 * 1e10: inf from finite numbers
        X[1, 0], T[1] = 1e10, [0.0, 1e300]
    else:                         # logits 1e299 times a gradient of ~1e10: inf
        X[1, 0] = 1e299
    rows = [[Value(v) for v in r] for r in X.tolist()]
    targets = [[Value(v) for v in r] for r in T.tolist()]
    with pytest.raises(OverflowError) as eager_error:
        loss_of(rebuilt, rows, targets).backward()
    with pytest.raises(OverflowError, match=re.escape(str(eager_error.value))):
        graph.forward(X, T)
        graph.backward()
    X[1, 0], T = 0.5, np.eye(2)[[0, 1, 0]]      # and the rows run whole again, exact
    for model in (replayed, rebuilt):
        model.zero_grad()
    want = loss_of(rebuilt, X.tolist(), T.tolist())
    want.backward()
    assert graph.forward(X, T) == want.data
    graph.backward()
    assert [p.grad for p in replayed.parameters()] == [p.grad for p in rebuilt.parameters()]


def bits(x):
    """x's bits, any NaN as one (a NaN's sign is not kept alike by eager and the
    layer kernels, fused rows or not)."""
    return "nan" if math.isnan(x) else struct.pack("<d", x)


@pytest.mark.parametrize("seed", range(6))
def test_rows_meeting_odd_numbers_agree_with_eager(seed):
    # Targets and logits with inf, -inf, NaN, huge and subnormal numbers: a row either
    # runs at once or falls back to its steps; the numbers (NaN's included) or the
    # error are eager's either way.
    odd = [float("inf"), -float("inf"), float("nan"), 1e308, -1e300, 5e-324, 0.0, -0.0]
    rng = random.Random(seed)
    replayed, rebuilt = twins(3, [4])
    for model in (replayed, rebuilt):
        last_layer_reading_feature_0(model)
    for model in (replayed, rebuilt):   # logits 1, 2, 3, 4 times feature 0
        for k, n in enumerate(model.layers[-1].neurons):
            n.w[0].data = float(k + 1)
    xs, ys = cgrad.inputs(4, 3), cgrad.inputs(4, 4)
    graph = Graph(losses.softmax_cross_entropy([replayed(x) for x in xs], ys),
                  inputs=(xs, ys))
    assert graph._fused_loss_rows() == 4
    for trial in range(8):
        X = np.array([[rng.choice(odd + [rng.uniform(-3, 3)] * 8), 0.0, 0.0]
                      for _ in range(4)])
        T = np.eye(4)[[rng.randrange(4) for _ in range(4)]]
        for _ in range(rng.randrange(3)):
            T[rng.randrange(4), rng.randrange(4)] = rng.choice(odd)
        for model in (replayed, rebuilt):
            model.zero_grad()
        try:
            want = losses.softmax_cross_entropy(
                [rebuilt([Value(v) for v in r]) for r in X.tolist()], T.tolist())
            want.backward()
        except (OverflowError, ValueError, ZeroDivisionError) as error:
            with pytest.raises(type(error)):
                graph.forward(X, T)
                graph.backward()
            continue
        got = graph.forward(X, T)
        graph.backward()
        assert bits(got) == bits(want.data), (trial, X, T)
        assert [bits(p.grad) for p in replayed.parameters()] == \
            [bits(p.grad) for p in rebuilt.parameters()], (trial, X, T)


def test_a_copied_row_that_overflows_fails_as_eagerly():
    # The same forward overflow in a step copied for its batch size (compile(dynamic=
    # True)): the row falls back to its steps, which name the failing node.
    replayed, rebuilt = twins(3, [2])
    for model in (replayed, rebuilt):
        last_layer_reading_feature_0(model)
    step = cgrad.compile(lambda xs, ys: losses.softmax_cross_entropy(
        [replayed(x) for x in xs], ys), dynamic=True)
    X, T = np.zeros((5, 3)), np.eye(2)[[0, 1, 0, 1, 1]]
    step(X, T)
    assert step.graphs[(X.shape, T.shape)]._fused_loss_rows() == 5
    X[3, 0], T[3] = 1e10, [0.0, 1e300]
    with pytest.raises(OverflowError) as eager_error:
        losses.softmax_cross_entropy([rebuilt([Value(v) for v in r]) for r in X.tolist()],
                                     [[Value(v) for v in r] for r in T.tolist()])
    with pytest.raises(OverflowError, match=re.escape(str(eager_error.value))):
        step(X, T)
    X[3, 0], T[3] = 0.5, [0.0, 1.0]
    want = losses.softmax_cross_entropy([rebuilt(r) for r in X.tolist()], T.tolist())
    assert step(X, T) == want.data
