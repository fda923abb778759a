"""Replay over whole layers: nn layers over a batch run as matrix-matrix kernels, bit for
bit equal to rebuilding the graph; the plan keeps its own numbers and the nodes catch up
whenever Python looks; memory follows the weights, not the batch times the weights."""
import os
import random
import re
import sys
import time
import tracemalloc

import numpy as np
import pytest

import cgrad
from cgrad import Graph, Value, losses, nn
from cgrad._replay import _set_caller_spin
from cgrad.optim import SGD, Adam


def twins(*args, **kwargs):
    random.seed(11)
    first = nn.MLP(*args, **kwargs)
    random.seed(11)
    return first, nn.MLP(*args, **kwargs)


def data(seed, batch, nin, classes):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, (batch, nin))
    return X, np.eye(classes)[rng.randint(0, classes, batch)]


@pytest.fixture
def small_chunks():
    """Kernel chunks of 128 terms (1024 by default), so that these sizes cross them."""
    from cgrad._replay import _set_kernel_chunk
    old = _set_kernel_chunk(128)
    yield
    _set_kernel_chunk(old)


def rebuilt_step(model, opt, X, one_hot, alpha):
    rows = [[Value(v) for v in row] for row in X.tolist()]
    loss = losses.softmax_cross_entropy([model(r) for r in rows], one_hot.tolist())
    if alpha:
        loss = loss + losses.l2(model.parameters(), alpha)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.data, rows


@pytest.mark.parametrize("nin, nouts, batch, alpha, make_opt", [
    (13, [9, 7, 3], 11, 0.0, lambda ps: Adam(ps, lr=0.03)),      # tails of every tile
    (16, [8, 4], 16, 1e-3, lambda ps: SGD(ps, lr=0.1, momentum=0.9)),  # L2 on the weights
    (5, [12, 3], 1, 0.0, lambda ps: SGD(ps, lr=0.2)),             # a batch of one
    (261, [133, 3], 131, 0.0, lambda ps: Adam(ps, lr=0.01)),      # sums across chunks
])
@pytest.mark.parametrize("threads, caller_spin", [(1, None), (3, None), (3, 0.0)])
def test_layers_replay_bit_for_bit(nin, nouts, batch, alpha, make_opt, threads, caller_spin,
                                   small_chunks):
    """caller_spin 0: the caller sleeps at once for the workers' parts (by default it
    spins up to 200 us first, and small parts end within that)."""
    old = _set_caller_spin(caller_spin) if caller_spin is not None else None
    try:
        check_layers_replay_bit_for_bit(nin, nouts, batch, alpha, make_opt, threads)
    finally:
        if old is not None:
            _set_caller_spin(old)


def check_layers_replay_bit_for_bit(nin, nouts, batch, alpha, make_opt, threads):
    replayed, rebuilt = twins(nin, nouts)
    xs, ys = cgrad.inputs(batch, nin), cgrad.inputs(batch, nouts[-1])
    loss = losses.softmax_cross_entropy([replayed(x) for x in xs], ys)
    if alpha:
        loss = loss + losses.l2(replayed.parameters(), alpha)
    graph = Graph(loss, inputs=(xs, ys), threads=threads)
    assert graph.n_layers == len(nouts)
    opt_replay, opt_rebuild = make_opt(replayed.parameters()), make_opt(rebuilt.parameters())
    for step in range(6):
        X, one_hot = data(step, batch, nin, nouts[-1])
        got = graph.step(X, one_hot, optimizer=opt_replay)
        want, rows = rebuilt_step(rebuilt, opt_rebuild, X, one_hot, alpha)
        assert got == want, step
        assert loss.data == want
        assert [v.grad for row in xs for v in row] == [v.grad for row in rows for v in row]
    assert [p.data for p in replayed.parameters()] == [p.data for p in rebuilt.parameters()]
    assert [p.grad for p in replayed.parameters()] == [p.grad for p in rebuilt.parameters()]


def test_a_row_read_twice_falls_back_to_steps_and_stays_exact():
    replayed, rebuilt = twins(4, [5, 2])
    xs, ys = cgrad.inputs(3, 4), cgrad.inputs(3, 2)
    scores = [replayed(x) for x in xs]
    again = [replayed(x) for x in xs]    # the same leaves in a second set of rows
    loss = losses.softmax_cross_entropy(scores + again, ys + ys)
    graph = Graph(loss, inputs=(xs, ys))
    assert graph.n_layers == 0
    opt_replay, opt_rebuild = SGD(replayed.parameters(), lr=0.1), SGD(rebuilt.parameters(), lr=0.1)
    for step in range(3):
        X, one_hot = data(step, 3, 4, 2)
        got = graph.step(X, one_hot, optimizer=opt_replay)
        rows = [[Value(v) for v in row] for row in X.tolist()]
        want = losses.softmax_cross_entropy([rebuilt(r) for r in rows] + [rebuilt(r) for r in rows],
                                            one_hot.tolist() * 2)
        opt_rebuild.zero_grad()
        want.backward()
        opt_rebuild.step()
        assert got == want.data
    assert [p.data for p in replayed.parameters()] == [p.data for p in rebuilt.parameters()]


@pytest.mark.parametrize("bad, error", [(0, ValueError), (65, ValueError), (2.0, TypeError),
                                        ("2", TypeError), (True, TypeError)])
def test_threads_must_be_a_small_positive_int(bad, error):
    xs = cgrad.inputs(2, 3)
    with pytest.raises(error, match="threads must be"):
        Graph(cgrad.sum(nn.Layer(3, 2)(xs[0])), inputs=xs, threads=bad)


def test_threads_default_to_the_cores_and_keep_the_bits():
    from cgrad._replay import default_threads
    assert 1 <= default_threads() <= 8
    random.seed(3)
    model = nn.MLP(5, [6, 3])
    X = np.random.RandomState(3).uniform(-1, 1, (16, 5))
    results = []
    for threads in (None, 1):
        xs = cgrad.inputs(16, 5)
        graph = Graph(cgrad.sum(o for x in xs for o in model(x)), inputs=xs,
                      threads=threads)
        for p in model.parameters():
            p.grad = 0.0
        results.append((graph.forward(X), graph.backward(), model.get_parameters().tolist(),
                        [p.grad for p in model.parameters()]))
    assert results[0] == results[1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_runs_a_threaded_graph():
    # the child has none of the parent's worker threads: its pool starts afresh
    replayed, _ = twins(8, [12, 3])
    xs, ys = cgrad.inputs(16, 8), cgrad.inputs(16, 3)
    graph = Graph(losses.softmax_cross_entropy([replayed(x) for x in xs], ys),
                  inputs=(xs, ys), threads=2)
    X, one_hot = data(0, 16, 8, 3)
    want = graph.forward(X, one_hot)       # the parent's workers exist now
    pid = os.fork()
    if pid == 0:
        os._exit(0 if graph.forward(X, one_hot) == want else 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.01)
    os.kill(pid, 9)
    pytest.fail("the forked child did not finish its run")


@pytest.mark.parametrize("threads, input_grads", [(1, True), (2, True), (1, False)])
@pytest.mark.parametrize("nouts", [[2], [4, 2]])
@pytest.mark.parametrize("blow_up", ["backward", "forward"])
def test_a_layer_that_overflows_fails_as_eagerly(blow_up, nouts, threads, input_grads):
    # Feature 0 has weight 0 everywhere, so an input of 1e20 there leaves the forward
    # finite while its weight gradients (1e20 x ~1e300) overflow; or a weight of 1e300
    # makes a dot overflow in forward.  Either way the layer falls back to its steps and
    # the error names the same node and numbers as eagerly.
    replayed, rebuilt = twins(3, nouts, activation='tanh')
    for model in (replayed, rebuilt):
        for n in model.layers[0].neurons:
            n.w[0].data = 0.0

    def loss_of(model, rows):
        return cgrad.sum([cgrad.sum(model(r)) for r in rows]) * 1e300

    xs = cgrad.inputs(4, 3)
    graph = Graph(loss_of(replayed, xs), inputs=xs, threads=threads, input_grads=input_grads)
    assert graph.n_layers == len(nouts)
    X = np.random.RandomState(0).uniform(-1, 1, (4, 3))
    if blow_up == "backward":
        X[2, 0] = 1e20
    else:
        for model in (replayed, rebuilt):
            model.layers[0].neurons[1].w[2].data = 1e300
        X[:, 2] = 0.0
        X[1, 2] = 1e10
    rows = [[Value(v) for v in r] for r in X.tolist()]
    with pytest.raises(OverflowError) as eager_error:
        loss_of(rebuilt, rows).backward()
    with pytest.raises(OverflowError, match=re.escape(str(eager_error.value))):
        graph.forward(X)
        graph.backward()
    if not input_grads:   # the layer fell back to steps that wrote them: zeroed again
        assert all(v.grad == 0.0 for row in xs for v in row)
    if len(nouts) == 1:
        # One layer: the sweep reached the failing node in the same order, so the
        # partial sums it leaves are eager's (the layer undid its own work before
        # running its steps one by one).  With more layers replay has already run all
        # of the later layer: partial sums, but not eager's.
        assert [p.grad for p in replayed.parameters()] == \
            [p.grad for p in rebuilt.parameters()]
    X[2, 0] = X[1, 2] = 0.0          # and the layer runs whole again, still exact
    for model in (replayed, rebuilt):
        model.layers[0].neurons[1].w[2].data = 0.5
        model.zero_grad()
    want = loss_of(rebuilt, X.tolist())
    want.backward()
    assert graph.forward(X) == want.data
    graph.backward()
    assert [p.grad for p in replayed.parameters()] == [p.grad for p in rebuilt.parameters()]
    if not input_grads:
        assert all(v.grad == 0.0 for row in xs for v in row)


def test_prediction_graph_runs_layers_and_matches_eager():
    model = nn.MLP(6, [10, 4], activation='tanh')
    xs = cgrad.inputs(9, 6)
    graph = Graph(inputs=xs, outputs=[model(x) for x in xs])
    assert graph.n_layers == 2
    X, _ = data(1, 9, 6, 4)
    assert graph.forward(X).tolist() == [[v.data for v in model(r)] for r in X.tolist()]


# ---- the plan's numbers and the nodes -------------------------------------------------

def training_graph(model, batch=4):
    xs, ys = cgrad.inputs(batch, 3), cgrad.inputs(batch, 2)
    loss = losses.softmax_cross_entropy([model(x) for x in xs], ys)
    return Graph(loss, inputs=(xs, ys)), loss


def test_parameters_written_between_steps_are_honoured():
    replayed, rebuilt = twins(3, [4, 2])
    graph, _ = training_graph(replayed)
    opt_replay, opt_rebuild = SGD(replayed.parameters(), lr=0.1), SGD(rebuilt.parameters(), lr=0.1)
    for step in range(4):
        X, one_hot = data(step, 4, 3, 2)
        if step == 2:   # weight clipping, the way a training loop writes it
            for model in (replayed, rebuilt):
                for p in model.parameters():
                    p.data = max(-0.3, min(0.3, p.data))
        got = graph.step(X, one_hot, optimizer=opt_replay)
        want, _ = rebuilt_step(rebuilt, opt_rebuild, X, one_hot, 0.0)
        assert got == want
    assert replayed.get_parameters().tolist() == rebuilt.get_parameters().tolist()


def test_two_graphs_sharing_parameters_see_each_others_updates():
    model = nn.MLP(3, [4, 2])
    graph, _ = training_graph(model)
    xs = cgrad.inputs(5, 3)
    predict = Graph(inputs=xs, outputs=[model(x) for x in xs])
    opt = Adam(model.parameters(), lr=0.05)
    X, one_hot = data(0, 4, 3, 2)
    Xp, _ = data(9, 5, 3, 2)
    for _ in range(3):
        graph.step(X, one_hot, optimizer=opt)
        assert predict.forward(Xp).tolist() == [[v.data for v in model(r)] for r in Xp.tolist()]


def test_graphs_over_separate_models_alternate_without_mixing():
    # Each run writes back only the numbers of graphs that share nodes with it; these
    # share none, so each keeps its own numbers in its plan between runs.
    (a, a_rebuilt), (b, b_rebuilt) = twins(3, [4, 2]), twins(3, [5, 2])
    graph_a, _ = training_graph(a)
    graph_b, _ = training_graph(b)
    xs = cgrad.inputs(3, 3)
    predict_a = Graph(inputs=xs, outputs=[a(x) for x in xs])
    opts = [Adam(m.parameters(), lr=0.05) for m in (a, a_rebuilt, b, b_rebuilt)]
    Xp, _ = data(7, 3, 3, 2)
    for step in range(4):
        X, one_hot = data(step, 4, 3, 2)
        assert graph_a.step(X, one_hot, optimizer=opts[0]) == \
            rebuilt_step(a_rebuilt, opts[1], X, one_hot, 0.0)[0]
        assert graph_b.step(X, one_hot, optimizer=opts[2]) == \
            rebuilt_step(b_rebuilt, opts[3], X, one_hot, 0.0)[0]
        assert predict_a.forward(Xp).tolist() == \
            [[v.data for v in a_rebuilt(r)] for r in Xp.tolist()]
        assert predict_a.outputs().tolist() == predict_a.forward(Xp).tolist()
    for model, rebuilt in ((a, a_rebuilt), (b, b_rebuilt)):
        assert [p.data for p in model.parameters()] == [p.data for p in rebuilt.parameters()]
        assert [p.grad for p in model.parameters()] == [p.grad for p in rebuilt.parameters()]


def test_nodes_show_the_plans_numbers_when_read():
    model = nn.MLP(3, [4, 2])
    graph, loss = training_graph(model)
    opt = SGD(model.parameters(), lr=0.5)
    X, one_hot = data(0, 4, 3, 2)
    first = graph.step(X, one_hot, optimizer=opt)
    second = graph.step(X, one_hot, optimizer=opt)
    assert loss.data == second != first
    assert (loss * 2).data == 2 * second          # eager ops read the current numbers
    eager = losses.softmax_cross_entropy([model([Value(v) for v in row]) for row in X.tolist()],
                                         one_hot.tolist())
    assert graph.forward(X, one_hot) == eager.data
    assert repr(loss) == f"Value(data={loss.data!r}, grad={loss.grad!r})"


def test_an_optimizer_over_other_values_runs_outside_the_plan():
    model = nn.MLP(3, [4, 2])
    graph, _ = training_graph(model)
    extra = Value(1.0)
    opt = SGD(model.parameters() + [extra], lr=0.1)   # extra is not in the graph
    X, one_hot = data(0, 4, 3, 2)
    before = model.get_parameters()
    graph.step(X, one_hot, optimizer=opt)
    assert not np.array_equal(model.get_parameters(), before) and extra.data == 1.0


# ---- memory follows the weights ---------------------------------------------------------

def test_graph_memory_does_not_hold_the_weights_once_per_example():
    random.seed(0)
    model = nn.MLP(200, [50, 10])          # 10,560 weights
    weights = len(model.parameters())

    def build(batch):
        xs, ys = cgrad.inputs(batch, 200), cgrad.inputs(batch, 10)
        loss = losses.softmax_cross_entropy([model(x) for x in xs], ys)
        return xs, ys, loss

    build(2)  # rows cached on the neurons
    tracemalloc.start()
    try:
        kept = build(32)
        per_example = tracemalloc.get_traced_memory()[0] / 32
    finally:
        tracemalloc.stop()
    assert kept
    # a copy of the weight pointers per example would be 2 * 8 bytes per weight
    assert per_example < weights * 16 / 4, per_example


def test_input_grads_off_skips_them_and_changes_nothing_else():
    replayed, rebuilt = twins(12, [6, 3])
    xs, ys = cgrad.inputs(5, 12), cgrad.inputs(5, 3)
    loss = losses.softmax_cross_entropy([replayed(x) for x in xs], ys)
    graph = Graph(loss, inputs=(xs, ys), input_grads=False)
    assert graph.n_layers == 2
    opt_replay, opt_rebuild = Adam(replayed.parameters(), lr=0.05), Adam(rebuilt.parameters(), lr=0.05)
    for step in range(4):
        X, one_hot = data(step, 5, 12, 3)
        assert graph.step(X, one_hot, optimizer=opt_replay) == \
            rebuilt_step(rebuilt, opt_rebuild, X, one_hot, 0.0)[0]
        assert all(v.grad == 0.0 for row in xs + ys for v in row)
    assert replayed.get_parameters().tolist() == rebuilt.get_parameters().tolist()


# ---- threads ------------------------------------------------------------------------------

def test_one_graph_from_two_threads_returns_each_callers_outputs():
    import threading
    model = nn.MLP(4, [6, 2])
    xs = cgrad.inputs(3, 4)
    graph = Graph(inputs=xs, outputs=[model(x) for x in xs])
    batches = [data(seed, 3, 4, 2)[0] for seed in range(8)]
    expected = [[[v.data for v in model(r)] for r in X.tolist()] for X in batches]
    wrong, errors = [], []

    def work(offset):
        try:
            for k in range(200):
                i = (k + offset) % len(batches)
                if graph.forward(batches[i]).tolist() != expected[i]:
                    wrong.append(i)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []


def test_two_graphs_sharing_parameters_backward_from_two_threads_lose_nothing():
    import threading
    model = nn.MLP(48, [48, 4])     # big enough for the runs to overlap without the GIL
    graphs = []
    for seed in range(2):
        xs, ys = cgrad.inputs(32, 48), cgrad.inputs(32, 4)
        graph = Graph(losses.softmax_cross_entropy([model(x) for x in xs], ys),
                      inputs=(xs, ys))
        X, one_hot = data(seed, 32, 48, 4)
        graph.forward(X, one_hot)
        graphs.append(graph)
    model.zero_grad()
    for graph in graphs:            # one backward each, in turn: the expected sums
        graph.backward()
    one_round = model.get_parameters()  # (data unchanged; grads are what we compare)
    single = [p.grad for p in model.parameters()]
    model.zero_grad()
    rounds, errors = 40, []

    def work(graph):
        try:
            for _ in range(rounds):
                graph.backward()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(g,)) for g in graphs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = [p.grad for p in model.parameters()]
    assert model.get_parameters().tolist() == one_round.tolist()
    assert got == pytest.approx([rounds * g for g in single], rel=1e-9)


def test_a_graph_is_built_once():
    model = nn.MLP(3, [2])
    xs = cgrad.inputs(2, 3)
    graph = Graph(inputs=xs, outputs=[model(x) for x in xs])
    with pytest.raises(RuntimeError, match="built once"):
        graph.__init__(inputs=xs, outputs=[])
    assert graph.forward(np.zeros((2, 3))).shape == (2, 2)
    broken = Graph.__new__(Graph)
    with pytest.raises(ValueError):
        broken.__init__(inputs=[[Value(1.0) * 2]])   # not a leaf: fails half-way
    with pytest.raises(RuntimeError, match="never built"):
        broken.forward(np.zeros((1, 1)))


# ---- every vector path the machine runs, the same bits -------------------------------------

def train_three_steps(exact=True, replay=True, optimizer="adam"):
    """The parameters after three Adam (or SGD with momentum and weight decay) steps of
    a two-layer MLP over 13 examples, replayed (threads=2 and kernels split: conftest)
    or rebuilt eagerly.  Every size leaves a partial panel of 8 (13 examples, 37
    inputs, 21 hidden units)."""
    random.seed(11)
    model = nn.MLP(37, [21, 5])
    opt = (Adam(model.parameters(), lr=0.01) if optimizer == "adam" else
           SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3))
    if replay:
        xs, ys = cgrad.inputs(13, 37), cgrad.inputs(13, 5)
        loss = losses.softmax_cross_entropy([model(x) for x in xs], ys)
        graph = Graph(loss, inputs=(xs, ys), threads=2, exact=exact)
        assert graph.n_layers == 2
    for step in range(3):
        X, one_hot = data(step, 13, 37, 5)
        if replay:
            graph.step(X, one_hot, optimizer=opt)
        else:
            rebuilt_step(model, opt, X, one_hot, 0.0)
    return model.get_parameters()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("exact", [True, False])
def test_every_vector_path_this_cpu_runs(exact, optimizer):
    """Exact: every path (portable, AVX2, AVX-512 where the CPU has them: the kernels
    and the optimizer's update) gives eager's bits.  exact=False: each path agrees with
    eager to 1e-12 relative (FMA rounds each multiply-add once instead of twice)."""
    from cgrad._replay import _limit_vectors, kernel_path
    eager = train_three_steps(replay=False, optimizer=optimizer)
    runs = {}
    try:
        for widest in ("portable", "avx2", "avx512"):
            _limit_vectors(widest)
            runs[kernel_path(exact)] = train_three_steps(exact=exact, optimizer=optimizer)
    finally:
        _limit_vectors("avx512")
    for path, params in runs.items():
        if exact:
            assert params.tolist() == eager.tolist(), path
        else:
            assert np.allclose(params, eager, rtol=1e-12, atol=1e-14), path
    from cgrad.cli.report import cpu_flags
    if not exact and "fma" in cpu_flags().split() and sys.platform == "linux":
        assert any("FMA" in path for path in runs), runs.keys()   # the FMA copy ran


@pytest.mark.parametrize("threads", [1, 3])
def test_a_refused_update_in_the_plan_names_the_first_parameter_as_eagerly(threads):
    # SGD with lr=1e308 breaks exactly the parameters whose gradient is not 0 (they are
    # all far above 2); the first four neurons (parameters 0-83) are dead, so the first
    # of those is in the second of the three parts the update is split into (64
    # parameters a unit), and the third breaks too
    replayed, rebuilt = twins(20, [8, 1])
    for model in (replayed, rebuilt):
        for n in model.layers[0].neurons[:4]:
            n.b.data = -1e3

    def loss_of(model, rows):
        return cgrad.sum([model(r) for r in rows]) * 1e3

    xs = cgrad.inputs(5, 20)
    graph = Graph(loss_of(replayed, xs), inputs=xs, threads=threads)
    X = np.random.RandomState(3).uniform(0.5, 1.0, (5, 20))
    eager_opt = SGD(rebuilt.parameters(), lr=1e308)
    loss_of(rebuilt, X.tolist()).backward()
    with pytest.raises(OverflowError) as eager_error:
        eager_opt.step()
    assert 84 <= int(re.search(r"parameter (\d+) ", str(eager_error.value))[1]) < 128
    before = replayed.get_parameters().tolist()
    with pytest.raises(OverflowError, match=re.escape(str(eager_error.value))):
        graph.step(X, optimizer=SGD(replayed.parameters(), lr=1e308))
    assert replayed.get_parameters().tolist() == before


@pytest.mark.parametrize("row_type, layers", [(list, 0), (nn.ParameterList, 2)])
def test_linear_over_a_batch_replays_as_layers_bit_for_bit(row_type, layers):
    """cgrad.linear builds what nn.Layer builds, without biases: a recorded batch of
    such calls runs as layers, with the numbers of rebuilding it.  Rows as plain lists
    get a row node per call, which the layers cannot share: step by step then."""
    def model():
        random.seed(4)
        return ([row_type([Value(random.uniform(-1, 1)) for _ in range(6)]) for _ in range(5)],
                [row_type([Value(random.uniform(-1, 1)) for _ in range(5)]) for _ in range(3)])

    def forward(weights, x):
        hidden = [h.tanh() for h in cgrad.linear(weights[0], x)]
        return cgrad.linear(weights[1], hidden)

    replayed, rebuilt = model(), model()
    params = [w for m in replayed for row in m for w in row]
    twin = [w for m in rebuilt for row in m for w in row]
    xs, ys = cgrad.inputs(4, 6), cgrad.inputs(4, 3)
    graph = Graph(losses.softmax_cross_entropy([forward(replayed, x) for x in xs], ys),
                  inputs=(xs, ys))
    assert graph.n_layers == layers
    opt, twin_opt = Adam(params, lr=0.01), Adam(twin, lr=0.01)
    for step in range(4):
        X, one_hot = data(step, 4, 6, 3)
        got = graph.step(X, one_hot, optimizer=opt)
        twin_opt.zero_grad()
        want = losses.softmax_cross_entropy([forward(rebuilt, list(x)) for x in X],
                                            [list(t) for t in one_hot])
        want.backward()
        twin_opt.step()
        assert got == want.data
    assert [p.data for p in params] == [p.data for p in twin]
