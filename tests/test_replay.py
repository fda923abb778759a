"""Graph replay: the same numbers as rebuilding the graph every step, and clear errors."""
import gc
import math
import random
import threading

import numpy as np
import pytest

import cgrad
from cgrad import Graph, Value, losses, nn
from cgrad.cli import steps as demo
from cgrad.optim import SGD, Adam
from op_rows import NARY, ROWS, arity


def twin_models(*args, **kwargs):
    """Two models with the same weights: one to replay, one to rebuild."""
    random.seed(7)
    first = nn.MLP(*args, **kwargs)
    random.seed(7)
    return first, nn.MLP(*args, **kwargs)


def params(model):
    return [p.data for p in model.parameters()]


def test_demo_replay_equals_rebuilding_bit_for_bit():
    X, y = demo.moons()
    replayed, rebuilt = twin_models(2, [16, 16, 1])
    xs = cgrad.inputs(100, 2)
    scores = [replayed(x) for x in xs]
    loss = losses.hinge(scores, y) + losses.l2(replayed.parameters(), 1e-4)
    graph = Graph(loss, inputs=xs, outputs=scores)
    opt_replay, opt_rebuild = SGD(replayed.parameters()), SGD(rebuilt.parameters())
    for k in range(40):
        opt_replay.lr = opt_rebuild.lr = demo.learning_rate(k)
        replay_loss = graph.step(X, optimizer=opt_replay)
        rebuild_loss, _ = demo.cgrad_step(rebuilt, opt_rebuild, X, y, k, 100)
        assert replay_loss == rebuild_loss, k
    assert params(replayed) == params(rebuilt)
    fresh = [rebuilt(list(x)).data for x in X.tolist()]
    graph.forward(X)
    assert graph.outputs().tolist() == fresh


def minibatches(seed, n_batches, batch, nin, n_classes):
    rng = np.random.RandomState(seed)
    for _ in range(n_batches):
        X = rng.uniform(-1, 1, (batch, nin))
        labels = rng.randint(0, n_classes, batch)
        yield X, labels, np.eye(n_classes)[labels]


def test_minibatch_adam_replay_equals_rebuilding_bit_for_bit():
    replayed, rebuilt = twin_models(5, [8, 4], activation='tanh')
    xs, ys = cgrad.inputs(6, 5), cgrad.inputs(6, 4)
    graph = Graph(losses.softmax_cross_entropy([replayed(x) for x in xs], ys), inputs=(xs, ys))
    opt_replay = Adam(replayed.parameters(), lr=0.05)
    opt_rebuild = Adam(rebuilt.parameters(), lr=0.05)
    for X, labels, one_hot in minibatches(0, 30, 6, 5, 4):
        replay_loss = graph.step(X, one_hot, optimizer=opt_replay)
        inputs = [[Value(v) for v in row] for row in X.tolist()]
        loss = losses.softmax_cross_entropy([rebuilt(x) for x in inputs], one_hot.tolist())
        opt_rebuild.zero_grad()
        loss.backward()
        opt_rebuild.step()
        assert replay_loss == loss.data
        # the input leaves get this batch's gradients, as fresh leaves would
        assert [v.grad for row in xs for v in row] == [v.grad for row in inputs for v in row]
    assert params(replayed) == params(rebuilt)


LOSSES_READING = {   # which of four parameters each loss reads; none reads the last
    "first": lambda p, d: (p[0] * d[0] + d[1]).tanh(),
    "second and third": lambda p, d: (p[1] * d[0]).exp() * p[2] + d[1],
}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_parameters_a_graph_does_not_read_are_updated_in_its_plan_as_on_the_nodes(optimizer):
    """microgpt's position embeddings past a short document: an optimizer over more
    parameters than a graph reads still runs in the plan, the unread ones updated with
    gradient 0 (their momentum carries them on), bit for bit as zero_grad, backward and
    step on the nodes.  Two graphs that share no node until then take back each
    other's numbers from then on."""
    def world():
        ps = [Value(v) for v in (0.5, -1.5, 2.0, 0.25)]
        return ps, (SGD(ps, lr=0.1, momentum=0.9) if optimizer == "sgd"
                    else Adam(ps, lr=0.05))
    (replayed, opt_replayed), (rebuilt, opt_rebuilt) = world(), world()
    graphs = {}
    for name, loss_of in LOSSES_READING.items():
        xs = cgrad.inputs(2)
        graphs[name] = Graph(loss_of(replayed, xs), inputs=xs)
    sizes = {name: graph.n_nodes for name, graph in graphs.items()}
    rng = np.random.RandomState(0)
    steps = [(list(LOSSES_READING)[k % 3 == 2], rng.uniform(-1, 1, 2)) for k in range(12)]
    # all replayed steps first: an eager op in between would hand every number back
    got = [graphs[name].step(d, optimizer=opt_replayed) for name, d in steps]
    expected = []
    for name, d in steps:
        opt_rebuilt.zero_grad()
        loss = LOSSES_READING[name](rebuilt, d.tolist())
        loss.backward()
        opt_rebuilt.step()
        expected.append(loss.data)
    assert got == expected
    assert [(p.data, p.grad) for p in replayed] == [(p.data, p.grad) for p in rebuilt]
    # the parameters each graph did not read became leaves of its plan
    assert graphs["first"].n_nodes == sizes["first"] + 3
    assert graphs["second and third"].n_nodes == sizes["second and third"] + 2


def test_a_parameter_another_graph_holds_newer_numbers_of_joins_a_plan_with_them():
    """Graph `a` (ahead of its nodes) takes an optimizer over a parameter that only graph
    `b` has updated: the parameter joins a's plan with b's numbers, not its node's old
    ones."""
    def world():
        return [Value(v) for v in (0.5, -1.5, 2.0)]
    replayed, rebuilt = world(), world()
    xa, xb = cgrad.inputs(1), cgrad.inputs(1)
    a = Graph((replayed[0] * xa[0]).tanh() * replayed[1], inputs=xa)
    b = Graph((replayed[2] * xb[0]).exp(), inputs=xb)
    plan = [("a", [0, 1]), ("b", [2]), ("a", [0, 2])]   # each step's optimizer

    def optimizers(ps):
        return [Adam([ps[i] for i in which], lr=0.1) for _, which in plan]
    opts_replayed, opts_rebuilt = optimizers(replayed), optimizers(rebuilt)
    eager = {"a": lambda ps, d: (ps[0] * d).tanh() * ps[1], "b": lambda ps, d: (ps[2] * d).exp()}
    got = [{"a": a, "b": b}[name].step([0.3 + k], optimizer=opts_replayed[k])
           for k, (name, _) in enumerate(plan)]   # no eager op in between (it would sync)
    expected = []
    for k, (name, _) in enumerate(plan):
        opts_rebuilt[k].zero_grad()
        loss = eager[name](rebuilt, 0.3 + k)
        loss.backward()
        opts_rebuilt[k].step()
        expected.append(loss.data)
    assert got == expected
    assert [(p.data, p.grad) for p in replayed] == [(p.data, p.grad) for p in rebuilt]


def test_relu_pattern_is_recomputed_for_new_data():
    model = nn.MLP(3, [6, 6, 2])
    xs = cgrad.inputs(4, 3)
    graph = Graph(inputs=xs, outputs=[model(x) for x in xs])
    for X, _, _ in minibatches(3, 5, 4, 3, 2):
        expected = [[v.data for v in model(row)] for row in X.tolist()]
        assert graph.forward(X).tolist() == expected


def test_backward_keeps_micrograds_accumulate_semantics():
    a, b = Value(0.0), Value(0.0)
    w = Value(1.5)
    loss = (a * w + b).tanh() * w
    graph = Graph(loss, inputs=[a, b])
    graph.forward([0.3, -0.2])
    graph.backward()
    graph.backward()  # leaf grads pile up; interior grads restart
    twin_a, twin_b, twin_w = Value(0.3), Value(-0.2), Value(1.5)
    twin = (twin_a * twin_w + twin_b).tanh() * twin_w
    twin.backward()
    twin.backward()
    assert (a.grad, b.grad, w.grad) == (twin_a.grad, twin_b.grad, twin_w.grad)
    assert w.grad == pytest.approx(2 * (math.tanh(0.45 - 0.2)
                                        + 1.5 * 0.3 * (1 - math.tanh(0.25) ** 2)))


def test_a_graph_without_inputs_replays_the_parameters_current_values():
    w = Value(2.0)
    loss = w * w
    graph = Graph(loss)
    w.data = 3.0
    assert graph.forward() == 9.0
    graph.backward()
    assert w.grad == 6.0


def test_a_leaf_loss_gets_grad_one():
    x = Value(0.0)
    graph = Graph(x, inputs=x)
    assert graph.forward(np.float64(4.5)) == 4.5
    graph.backward()
    assert x.grad == 1.0


@pytest.mark.parametrize("read", [True, False])
def test_the_same_value_twice_among_the_inputs_is_refused(read):
    x, y = cgrad.inputs(2)
    loss = (x * y if read else x * 3.0)   # read: both in the plan; else y is stray
    for inputs in ([x, y, x], ([x, y], [x]), [x, y, y], ([x, y], [y])):
        with pytest.raises(ValueError, match="the same Value appears twice"):
            Graph(loss, inputs=inputs)
    Graph(loss, inputs=[x, y])


def test_inputs_helper_shapes():
    assert len(cgrad.inputs(3)) == 3 and all(v.data == 0.0 for v in cgrad.inputs(3))
    grid = cgrad.inputs(2, 3, 4)
    assert [len(grid), len(grid[0]), len(grid[0][0])] == [2, 3, 4]
    with pytest.raises(ValueError, match="sizes >= 0"):
        cgrad.inputs(2, -1)


# ---- errors --------------------------------------------------------------------------

@pytest.fixture
def small_graph():
    xs = cgrad.inputs(2, 3)
    model = nn.MLP(3, [2])
    loss = cgrad.sum(sum(model(x)) for x in xs)
    return Graph(loss, inputs=xs, outputs=[model(x) for x in xs])


def test_wrong_shapes_and_counts_raise(small_graph):
    with pytest.raises(ValueError, match=r"shape \(3, 2\).*shape \(2, 3\)"):
        small_graph.forward(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        small_graph.forward([[1, 2], [3, 4]])
    with pytest.raises(TypeError, match="takes 1 input array"):
        small_graph.forward(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="takes 1 input array"):
        small_graph.forward()
    with pytest.raises(TypeError, match="array of real numbers"):
        small_graph.forward([["a", "b", "c"], ["d", "e", "f"]])
    with pytest.raises(TypeError, match="array of real numbers"):
        small_graph.forward([[1, None, 3], [4, 5, 6]])
    with pytest.raises(TypeError, match="array of real numbers"):
        small_graph.forward(None)
    with pytest.raises(ValueError, match="input 0"):
        small_graph.forward([[1, 2, 3], [4, 5]])
    with pytest.raises(TypeError, match="needs an optimizer"):
        small_graph.step(np.zeros((2, 3)), optimizer=None)


def test_building_from_bad_pieces_raises():
    a, b = Value(1.0), Value(2.0)
    with pytest.raises(ValueError, match="must be leaves"):
        Graph(a * b, inputs=[a * b])
    with pytest.raises(ValueError, match="twice"):
        Graph(a * b, inputs=[a, a])
    with pytest.raises(ValueError, match="ragged"):
        Graph(a * b, inputs=[[a], [b, Value(0)]])
    with pytest.raises(TypeError, match="must be a Value"):
        Graph(3.0)
    with pytest.raises(TypeError, match="nested lists of Values"):
        Graph(a * b, inputs=[1.0, 2.0])
    graph = Graph(inputs=[a], outputs=[a * b])
    with pytest.raises(TypeError, match="needs a loss"):
        graph.backward()
    with pytest.raises(TypeError, match="needs a loss"):
        graph.step([1.0], optimizer=SGD([b]))


def test_math_errors_during_replay_raise_and_the_graph_stays_usable():
    x = Value(1.0)
    loss = (x * 2).log()
    graph = Graph(loss, inputs=x)
    with pytest.raises(ValueError, match="math domain error"):
        graph.forward(-1.0)
    with pytest.raises(OverflowError):
        Graph((x * 800).exp(), inputs=x).forward(2.0)
    assert graph.forward(0.5) == 0.0


def test_a_layer_summed_side_by_side_gives_the_eager_numbers_and_errors():
    """Replay sums a layer's dots over the same inputs side by side; values, an overflow
    in one neuron, and infinite inputs must come out as when rebuilding the graph."""
    random.seed(3)
    layer = nn.Layer(5, 7, activation='tanh')
    xs = cgrad.inputs(5)
    outs = layer(xs)
    graph = Graph(cgrad.sum(outs), inputs=xs, outputs=outs)
    rng = np.random.default_rng(0)
    for row in rng.normal(size=(20, 5)).tolist() + [[math.inf, 1, 2, 3, 4], [math.nan] * 5]:
        loss = graph.forward(row)
        eager = layer(row)
        expected = [v.data for v in eager]
        assert [str(v) for v in graph.outputs().tolist()] == [str(v) for v in expected]
        assert str(loss) == str(cgrad.sum(eager).data)
    layer.neurons[4].w[0].data = 1e308
    for x in (2.0, -2.0):
        with pytest.raises(OverflowError, match="dot product"):
            layer([x, 0, 0, 0, 0])
        with pytest.raises(OverflowError, match="dot product"):
            graph.forward([x, 0, 0, 0, 0])
    assert graph.forward([0.5] * 5) == cgrad.sum(layer([0.5] * 5)).data


def test_a_dot_that_reads_its_neighbours_output_is_not_summed_side_by_side():
    xs = cgrad.inputs(3)
    first = cgrad.dot([Value(0.5), Value(-1.0), Value(2.0)], xs, Value(0.1)).relu()
    second = cgrad.dot([first, Value(0.25), Value(-0.5)], xs, Value(0.2)).relu()
    graph = Graph(first + second, inputs=xs)
    for row in ([1.0, 2.0, 3.0], [3.0, -1.0, 0.5], [-2.0, 0.0, 1.0]):
        for x, v in zip(xs, row):
            x.data = v
        rebuilt_first = cgrad.dot([Value(0.5), Value(-1.0), Value(2.0)], row, 0.1).relu()
        rebuilt = rebuilt_first + cgrad.dot([rebuilt_first, 0.25, -0.5], row, 0.2).relu()
        assert graph.forward(row) == rebuilt.data


def test_the_graph_keeps_its_nodes_alive_when_everything_else_is_dropped():
    model = nn.MLP(4, [5, 1])
    xs = cgrad.inputs(3, 4)
    scores = [model(x) for x in xs]
    graph = Graph(cgrad.sum(scores), inputs=xs, outputs=scores)
    expected = graph.forward(np.ones((3, 4)))
    optimizer = SGD(model.parameters(), lr=0.0)
    del model, xs, scores
    gc.collect()
    assert graph.step(np.ones((3, 4)), optimizer=optimizer) == expected


def test_reinitialising_a_recorded_node_does_not_crash():
    a = Value(0.0)
    hidden = (a * 2).relu()
    loss = hidden * 3 + 1
    graph = Graph(loss, inputs=a)
    Value.__init__(hidden, 5.0)  # hostile: the node is now a plain leaf
    del hidden
    gc.collect()
    assert graph.forward(1.0) == 7.0  # the graph as recorded: relu(1 * 2) * 3 + 1
    graph.backward()
    assert a.grad == 6.0


def test_graphs_run_in_threads_give_the_same_numbers():
    X, _ = demo.moons()
    results = {}

    weights = nn.MLP(2, [16, 16, 1]).get_parameters()   # drawn once, in this thread

    def work(name):
        model = nn.MLP(2, [16, 16, 1])
        model.set_parameters(weights)
        xs = cgrad.inputs(100, 2)
        graph = Graph(cgrad.sum(model(x) for x in xs), inputs=xs)
        results[name] = [graph.forward(X * k) for k in range(50)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1] == results[2]


def test_graphs_recorded_in_threads_over_one_model_agree():
    """Recording walks the graph with visit marks stored in the nodes: threads that
    record graphs sharing a model at the same time must not garble each other's."""
    X, _ = demo.moons()
    random.seed(2)
    model = nn.MLP(2, [16, 16, 1])
    xs = cgrad.inputs(100, 2)
    expected = Graph(cgrad.sum(model(x) for x in xs), inputs=xs).forward(X)
    sums = [cgrad.sum(model(x) for x in xs) for _ in range(4)]
    results, start = {}, threading.Barrier(4)

    def work(i):
        start.wait()
        results[i] = [Graph(sums[i], inputs=xs).forward(X) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == [expected] * 20 for r in results.values())


# ---- random graphs: replay against rebuilding, bit for bit ---------------------------

from hypothesis import assume, given, settings, strategies as st  # noqa: E402

# every one- and two-input op of the table (tests/op_rows.py), and the n-ary ops in the
# layouts replay packs differently (runs of slots, fresh constants, a shared bias)
OPS = {
    **{key: (lambda row: lambda n, i, j: row.apply(n[i]))(row)
       for key, row in ROWS.items() if arity(key) == 1},
    **{key: (lambda row: lambda n, i, j: row.apply(n[i], n[j]))(row)
       for key, row in ROWS.items() if arity(key) == 2 and key not in NARY},
    'exp_small': lambda n, i, j: (n[i] * 0.1).exp(),
    'dot': lambda n, i, j: cgrad.dot(n[i:i + 3], n[j:j + 3], n[j]),
    'dot_fresh': lambda n, i, j: cgrad.dot([Value(0.5), Value(-1.5)], n[i:i + 2]),
    'sum': lambda n, i, j: cgrad.sum(n[i:i + 4]),
    'logsumexp': lambda n, i, j: cgrad.logsumexp(n[j:j + 3] + [n[i]]),
}
data = st.floats(-2, 2, allow_nan=False)


def build(inputs, steps):
    nodes = list(inputs)
    for op, i, j in steps:
        nodes.append(OPS[op](nodes, i % len(nodes), j % len(nodes)))
    return nodes


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5).flatmap(lambda k: st.tuples(
           st.lists(data, min_size=k, max_size=k), st.lists(data, min_size=k, max_size=k),
           st.lists(st.tuples(st.sampled_from(sorted(OPS)), st.integers(0, 99),
                              st.integers(0, 99)), min_size=1, max_size=20))))
def test_random_graphs_replay_as_they_rebuild(case):
    first, second, steps = case
    inputs = [Value(x) for x in first]
    try:
        nodes = build(inputs, steps)
    except (ArithmeticError, ValueError):
        assume(False)
    graph = Graph(nodes[-1], inputs=inputs, outputs=nodes)

    fresh = [Value(x) for x in second]
    try:
        rebuilt = build(fresh, steps)
        rebuilt[-1].backward()
    except (ArithmeticError, ValueError):
        with pytest.raises((ArithmeticError, ValueError)):
            graph.forward(second)
            graph.backward()
        return
    graph.forward(second)
    assert graph.outputs().tolist() == [n.data for n in rebuilt]
    graph.backward()
    assert [v.grad for v in inputs] == [v.grad for v in fresh]


def test_overflow_in_a_replayed_dot_backward_raises_as_eagerly():
    w, x = Value(1e-300), Value(0.0)
    loss = cgrad.dot([w], [x]) * 1e300            # d loss / d w = x * 1e300
    graph = Graph(loss, inputs=[x])
    eager_x = Value(1e10)
    with pytest.raises(OverflowError, match="gradient overflowed"):
        (cgrad.dot([Value(1e-300)], [eager_x]) * 1e300).backward()
    graph.forward([1e10])
    with pytest.raises(OverflowError, match="gradient overflowed"):
        graph.backward()
    graph.forward([1.0])
    graph.backward()
    assert x.grad == 1e-300 * 1e300


def test_a_node_given_init_again_leaves_the_graph_on_its_recorded_kids():
    # Re-initialising a Value lets go of its kids; the plan still reads and writes them
    # (which nodes exist is fixed at build time), so the Graph keeps them alive.  Were
    # `a` freed, its memory would go to new Values (it sits alone in its 64 KiB slab,
    # which is then reused) and the plan would read 7.0 and write its numbers there.
    x = cgrad.inputs(3)
    padding = [Value(0.0) for _ in range(2000)]     # on past x's slab
    a = Value(2.0)
    padding += [Value(0.0) for _ in range(2000)]    # a's slab filled, then more
    h = x[0] * a
    loss = h + x[1] * x[2]
    graph = Graph(loss, inputs=x)
    X = np.array([1.0, 2.0, 3.0])
    assert graph.forward(X) == 8.0
    h.__init__(5.0)
    del a, padding
    gc.collect()
    fresh = [Value(7.0) for _ in range(10_000)]
    for _ in range(3):
        assert graph.forward(X) == 1.0 * 2.0 + 2.0 * 3.0
        graph.backward()
        assert [v.grad for v in x] == [2.0, 3.0, 2.0]
        assert all(v.data == 7.0 and v.grad == 0.0 for v in fresh)
