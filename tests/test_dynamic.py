"""cgrad.compile(fn, dynamic=True) and BatchTemplate: a step for any batch size copied
from the steps recorded over two and three examples (csrc/tile.c).

Oracles: the eager graph built over the same batch (backward() and the optimizer on the
nodes), and the Graph recorded over that batch (cgrad.compile without dynamic), each
on its own copy of the model from the same seed: every loss and every parameter after
every step must be equal bit for bit."""
import math
import pickle
import random

import numpy as np
import pytest

import cgrad
from cgrad import Value, losses, nn
from cgrad.optim import SGD, Adam


def mlp(nin, nouts, activation="relu"):
    random.seed(7)
    return nn.MLP(nin, nouts, activation=activation)


def ce_step(model):
    return lambda xs, ys: losses.softmax_cross_entropy([model(x) for x in xs], ys)


def hinge_l2_step(model):   # micrograd's demo loss: a term over the parameters alone
    return lambda xs, ys: (losses.hinge([model(x) for x in xs], ys)
                           + losses.l2(model.parameters(), 1e-4))


def mse_step(model):
    return lambda xs, ys: losses.mse([model(x) for x in xs], ys)


def bce_step(model):
    return lambda xs, ys: losses.binary_cross_entropy_with_logits(
        [model(x) for x in xs], ys)


def data(rng, kind, batch, nin, nout):
    X = rng.uniform(-1, 1, (batch, nin))
    if kind == "ce":
        return X, np.eye(nout)[rng.integers(0, nout, batch)]
    if kind == "hinge":
        return X, rng.choice([-1.0, 1.0], batch)
    if kind == "bce":
        return X, rng.integers(0, 2, batch).astype(float)
    return X, rng.normal(size=batch)


CASES = [   # (loss kind, step maker, nin, nouts, optimizer)
    ("ce", ce_step, 6, [8, 4], Adam),
    ("hinge", hinge_l2_step, 2, [8, 8, 1], SGD),
    ("mse", mse_step, 3, [5, 1], SGD),
    ("bce", bce_step, 4, [6, 1], Adam),
]
BATCHES = [4, 2, 7, 1, 3, 16, 5, 4]   # repeats reuse a Graph; 1 is traced as usual


def params_equal(a, b):
    return all(p.data == q.data and p.grad == q.grad
               for p, q in zip(a.parameters(), b.parameters()))


def steps_agree(d, r, od, orr, rng, kind, batches, nin, nout):
    """d and r stepped over the same batches give the same losses."""
    for batch in batches:
        X, Y = data(rng, kind, batch, nin, nout)
        assert d.step(X, Y, optimizer=od) == r.step(X, Y, optimizer=orr), batch


@pytest.mark.parametrize("kind,make_step,nin,nouts,opt", CASES, ids=[c[0] for c in CASES])
def test_equals_the_recorded_graph_and_eager_for_every_batch_size(kind, make_step, nin,
                                                                   nouts, opt):
    dynamic, recorded, eager = (mlp(nin, nouts) for _ in range(3))
    d = cgrad.compile(make_step(dynamic), dynamic=True, threads=1)
    r = cgrad.compile(make_step(recorded), threads=1)
    e_step = make_step(eager)
    od, orr, oe = (opt(m.parameters(), lr=0.05) for m in (dynamic, recorded, eager))
    rng = np.random.default_rng(3)
    for batch in BATCHES:
        X, Y = data(rng, kind, batch, nin, nouts[-1])
        loss_d = d.step(X, Y, optimizer=od)
        loss_r = r.step(X, Y, optimizer=orr)
        loss = e_step([[cgrad.Value(v) for v in row] for row in X], Y.tolist())
        oe.zero_grad()
        loss.backward()
        oe.step()
        assert loss_d == loss_r == loss.data, batch
        assert params_equal(dynamic, recorded) and params_equal(dynamic, eager), batch
    assert sorted(s[0][0] for s in d.graphs) == [1, 2, 3, 4, 5, 7, 16]
    assert list(d.templates) == [((nin,), Y.shape[1:])]
    assert repr(d).endswith(", dynamic=True: 7 batch size(s) from 1 template(s))")


def test_a_copied_graph_runs_the_recorded_graphs_layers():
    model = mlp(10, [12, 6, 3])
    d = cgrad.compile(ce_step(model), dynamic=True)
    X, Y = data(np.random.default_rng(0), "ce", 40, 10, 3)
    d.step(X, Y, optimizer=SGD(model.parameters(), lr=0.1))
    copied = d.graph_for((X, Y))
    recorded = cgrad.compile(ce_step(model)).graph_for((X, Y))
    assert copied.n_layers == recorded.n_layers == 3
    assert copied.n_nodes == recorded.n_nodes   # a slot for each of the batch's nodes


def test_a_copy_makes_no_values():
    """Values live in slabs tracemalloc sees; a copy's plan is C memory it does not:
    recording over 200 examples makes ~200 x 70 Values, copying makes none.  (Slabs
    kept empty for reuse are given back first: reused, they would not count.)"""
    import tracemalloc

    from cgrad._core import _trim_slabs
    model = mlp(30, [20, 3])
    d = cgrad.compile(ce_step(model), dynamic=True)
    X, Y = data(np.random.default_rng(0), "ce", 200, 30, 3)
    d.graph_for((X[:4], Y[:4]))   # the template
    tracemalloc.start()
    try:
        _trim_slabs()
        before = tracemalloc.get_traced_memory()[0]
        d.graph_for((X, Y))
        copying = tracemalloc.get_traced_memory()[0] - before
        _trim_slabs()
        before = tracemalloc.get_traced_memory()[0]
        kept = cgrad.compile(ce_step(model)).graph_for((X, Y))
        recording = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept.n_layers == 2
    assert recording > 200 * 30 * 96 and copying < 20_000, (copying, recording)


@pytest.mark.parametrize("options", [dict(threads=2), dict(exact=False),
                                     dict(threads=2, exact=False)])
def test_options_reach_the_copies(options):
    """threads and exact=False: a copy is the plan the recorded Graph over that batch
    is, so its numbers are the recorded Graph's with the same options."""
    a, b = mlp(30, [64, 5]), mlp(30, [64, 5])
    d = cgrad.compile(ce_step(a), dynamic=True, **options)
    r = cgrad.compile(ce_step(b), **options)
    oa, ob = Adam(a.parameters(), lr=0.01), Adam(b.parameters(), lr=0.01)
    steps_agree(d, r, oa, ob, np.random.default_rng(1), "ce", (64, 9, 64), 30, 5)
    assert params_equal(a, b)


def test_forward_and_backward_of_a_copy():
    a, b = mlp(5, [7, 3]), mlp(5, [7, 3])
    d, r = cgrad.compile(ce_step(a), dynamic=True), cgrad.compile(ce_step(b))
    X, Y = data(np.random.default_rng(2), "ce", 6, 5, 3)
    assert d(X, Y) == r(X, Y)
    d.graph_for((X, Y)).backward()
    r.graph_for((X, Y)).backward()
    assert params_equal(a, b)


def test_a_node_built_outside_fn_is_shared_by_every_example():
    """A Value fn reads but did not build (here a scale computed once from a
    parameter) is one node every example reads, as in the graph over the batch."""
    def make(model):
        scale = model.parameters()[0] * 2 + 1
        return lambda xs, ys: losses.mse([model(x) * scale for x in xs], ys), scale
    a, b = mlp(3, [4, 1]), mlp(3, [4, 1])
    (fa, _), (fb, _) = make(a), make(b)
    d, r = cgrad.compile(fa, dynamic=True), cgrad.compile(fb)
    oa, ob = SGD(a.parameters(), lr=0.01), SGD(b.parameters(), lr=0.01)
    steps_agree(d, r, oa, ob, np.random.default_rng(4), "mse", (6, 6, 11), 3, 1)
    assert params_equal(a, b)


def test_parameters_read_between_steps_are_the_plans():
    a, b = mlp(4, [5, 2]), mlp(4, [5, 2])
    d, r = cgrad.compile(ce_step(a), dynamic=True), cgrad.compile(ce_step(b))
    oa, ob = Adam(a.parameters(), lr=0.05), Adam(b.parameters(), lr=0.05)
    rng = np.random.default_rng(5)
    for _ in range(3):
        X, Y = data(rng, "ce", 8, 4, 2)
        d.step(X, Y, optimizer=oa)
        r.step(X, Y, optimizer=ob)
        assert a.parameters()[3].data == b.parameters()[3].data   # one node's sync
        assert params_equal(a, b)                                 # every node's
        w = a.parameters()[0]
        assert (w * 1.0).data == w.data   # an eager op on a parameter after a step


def test_a_copied_graph_pickles():
    model = mlp(4, [5, 2])
    d = cgrad.compile(ce_step(model), dynamic=True)
    X, Y = data(np.random.default_rng(6), "ce", 9, 4, 2)
    graph = d.graph_for((X, Y))
    loss = graph.forward(X, Y)
    again = pickle.loads(pickle.dumps(graph))
    assert again.input_shapes == ((9, 4), (9, 2))
    assert again.forward(X, Y) == loss   # over its own copy of the model


def refused(fn, batch=4, nin=3):
    step = cgrad.compile(fn, dynamic=True)
    X, Y = data(np.random.default_rng(0), "ce", batch, nin, 2)
    with pytest.raises(ValueError) as error:
        step.step(X, Y, optimizer=SGD([], lr=0.1))
    return str(error.value)


def test_steps_that_are_not_a_sum_over_examples_are_refused():
    model = mlp(3, [4, 2])
    coupled = refused(lambda xs, ys: losses.softmax_cross_entropy(
        [model(x) for x in xs], ys) + (model(xs[0])[0] - model(xs[1])[0]) ** 2)
    assert "a term reads two examples" in coupled
    not_the_examples = refused(lambda xs, ys: sum(   # Python's sum() of something else
        [losses.cross_entropy(model(x), y) for x, y in zip(xs, ys)], model(xs[0])[0]))
    assert "not one graph per example" in not_the_examples
    fixed = refused(lambda xs, ys: cgrad.sum(
        [losses.cross_entropy(model(x), y) for x, y in zip(xs, ys)]) * 0.5)
    assert "1/batch" in fixed

    def grows(xs, ys):   # what the batch size changes beyond the examples
        loss = losses.softmax_cross_entropy([model(x) for x in xs], ys)
        return loss + model.parameters()[0] ** 2 if len(xs) > 2 else loss
    assert "three examples" in refused(grows)
    both = cgrad.compile(lambda xs: (None, [model(x) for x in xs] + [model(xs[0])]),
                         dynamic=True)
    with pytest.raises(ValueError, match="one entry per example"):
        both(np.zeros((5, 3)))


def test_mistakes_get_clear_errors():
    model = mlp(3, [4, 2])
    step = cgrad.compile(ce_step(model), dynamic=True)
    opt = SGD(model.parameters(), lr=0.1)
    X, Y = data(np.random.default_rng(0), "ce", 5, 3, 2)
    with pytest.raises(ValueError, match="the same length"):
        step.step(X, Y[:4], optimizer=opt)
    with pytest.raises(ValueError, match="empty batch"):
        step.step(X[:0], Y[:0], optimizer=opt)
    with pytest.raises(ValueError, match="first axis is the batch"):
        step.step(np.float64(1.0), Y, optimizer=opt)
    with pytest.raises(ValueError, match="input gradients"):
        cgrad.compile(ce_step(model), dynamic=True, input_grads=True)
    with pytest.raises(TypeError, match="True or False"):
        cgrad.compile(ce_step(model), dynamic="yes")
    with pytest.raises(ValueError, match="has shape"):   # a copy checks shapes as a Graph
        step.graph_for((X, Y)).step(X[:, :2], Y, optimizer=opt)
    assert step.step(X, Y, optimizer=opt) > 0   # nothing broken by the mistakes


def test_batch_template_takes_graphs_of_two_and_three_examples():
    model = mlp(3, [2])
    xs2, ys2, xs3, ys3 = (cgrad.inputs(n, w) for n, w in ((2, 3), (2, 2), (3, 3), (3, 2)))
    two = cgrad.Graph(ce_step(model)(xs2, ys2), inputs=(xs2, ys2))
    three = cgrad.Graph(ce_step(model)(xs3, ys3), inputs=(xs3, ys3))
    with pytest.raises(ValueError, match="over inputs of 3 examples"):
        cgrad.BatchTemplate(two, two)
    with pytest.raises(TypeError):
        cgrad.BatchTemplate(two, None)
    template = cgrad.BatchTemplate(two, three)
    assert template.graph(2) is two and template.graph(3).input_shapes == ((3, 3), (3, 2))
    with pytest.raises(ValueError, match="2 examples or more"):
        template.graph(1)
    assert template.graph(6).input_shapes == ((6, 3), (6, 2))


def test_errors_in_a_copied_example_are_told_as_in_the_recorded_graph():
    """A number that overflows in example 4 (a copy's slots, whose nodes are the second
    example's; a copy's layers rebuild their dots to run them one by one): the same
    error as the Graph recorded over the batch; non-finite data passes through forward
    and backward the same way."""
    a, b = mlp(3, [4, 2]), mlp(3, [4, 2])
    for p in a.parameters() + b.parameters():
        p.data = 1.0
    d, r = cgrad.compile(ce_step(a), dynamic=True), cgrad.compile(ce_step(b))
    X, Y = np.ones((6, 3)), np.eye(2)[[0, 1, 0, 1, 0, 1]]
    X[4] = 1e308
    messages = []
    for step in (d, r):
        with pytest.raises(OverflowError) as error:
            step(X, Y)
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "dot product of 3 pairs" in messages[0]
    for bad in (np.inf, np.nan):
        X[4] = 1.0
        X[4, 1] = bad
        assert np.isnan(d(X, Y)) and np.isnan(r(X, Y))
        d.graph_for((X, Y)).backward()
        r.graph_for((X, Y)).backward()
        grads_a = np.array([p.grad for p in a.parameters()])
        grads_b = np.array([p.grad for p in b.parameters()])
        assert np.array_equal(grads_a, grads_b, equal_nan=True)
    X[4, 1] = 1.0
    for m in (a, b):
        m.zero_grad()
    assert d(X, Y) == r(X, Y)   # nothing left behind
    d.graph_for((X, Y)).backward()
    r.graph_for((X, Y)).backward()
    assert params_equal(a, b)


@pytest.mark.parametrize("seed", range(12))
def test_random_models_and_losses(seed):
    """Random widths, depths, activations, losses, extra per-example ops (constants
    made per example) and an L2 term over the parameters; batch sizes 1-12 in random
    order, repeated: the copies equal the Graphs recorded per batch size bit for bit."""
    rng = random.Random(seed)
    nin = rng.randint(1, 6)
    kind = rng.choice(["ce", "mse", "hinge", "bce"])
    nout = rng.randint(2, 4) if kind == "ce" else 1
    nouts = [rng.randint(2, 7) for _ in range(rng.randint(0, 2))] + [nout]
    activation = rng.choice(["relu", "tanh", "sigmoid", "linear"])
    extra = rng.choice([None, "affine", "square"])
    l2 = rng.random() < 0.5
    loss_fn = {"ce": losses.softmax_cross_entropy, "mse": losses.mse,
               "hinge": losses.hinge, "bce": losses.binary_cross_entropy_with_logits}[kind]

    def make(model):
        def head(out):
            out = out if isinstance(out, list) else [out]
            if extra == "affine":
                out = [v * 0.5 + 0.25 for v in out]
            elif extra == "square":
                out = [v * v for v in out]
            return out if kind == "ce" else out[0]

        def fn(xs, ys):
            loss = loss_fn([head(model([v for row in x for v in row])) for x in xs], ys)
            return loss + losses.l2(model.parameters(), 1e-3) if l2 else loss
        return fn
    a, b = mlp(2 * nin, nouts, activation), mlp(2 * nin, nouts, activation)
    d, r = cgrad.compile(make(a), dynamic=True), cgrad.compile(make(b))
    opt = rng.choice([SGD, Adam])
    oa, ob = opt(a.parameters(), lr=0.01), opt(b.parameters(), lr=0.01)
    nprng = np.random.default_rng(seed)
    sizes = [rng.randint(1, 12) for _ in range(6)]
    for batch in sizes + sizes[:2]:
        X, Y = data(nprng, kind, batch, 2 * nin, nout)
        X = X.reshape(batch, 2, nin)   # an input of shape (batch, 2, nin)
        assert d.step(X, Y, optimizer=oa) == r.step(X, Y, optimizer=ob), (seed, batch)
    assert params_equal(a, b)


def _loss_of_shared_model(xs, ys):   # module level: a compiled step that pickles
    return losses.softmax_cross_entropy([SHARED_MODEL(x) for x in xs], ys)


SHARED_MODEL = mlp(3, [4, 2])


def test_a_dynamic_compiled_step_pickles_with_its_templates():
    step = cgrad.compile(_loss_of_shared_model, dynamic=True)
    X, Y = data(np.random.default_rng(8), "ce", 5, 3, 2)
    loss = step(X, Y)
    again = pickle.loads(pickle.dumps(step))
    assert len(again.templates) == 1 and again(X, Y) == loss
    assert again(X[:4], Y[:4]) == step(X[:4], Y[:4])   # a new size, from the template


def test_more_mistakes_and_limits():
    model = mlp(3, [4, 2])
    X, Y = data(np.random.default_rng(0), "ce", 5, 3, 2)
    opt = SGD(model.parameters(), lr=0.1)
    first_only = cgrad.compile(lambda xs, ys: losses.softmax_cross_entropy(
        [model(xs[0])], ys[:1]), dynamic=True)
    with pytest.raises(ValueError, match="not read for the other"):
        first_only.step(X, Y, optimizer=opt)
    leaf = cgrad.compile(lambda xs: xs[0][0], dynamic=True)
    with pytest.raises(ValueError, match="one of the inputs"):
        leaf(X)
    calls = []

    def fails_once(xs, ys):
        calls.append(len(xs))
        if len(calls) == 1:
            raise RuntimeError("the model is not ready")
        return ce_step(model)(xs, ys)
    step = cgrad.compile(fails_once, dynamic=True)
    with pytest.raises(RuntimeError, match="not ready"):
        step(X, Y)
    assert not step.graphs and not step.templates   # nothing half made is kept
    assert step(X, Y) == cgrad.compile(ce_step(model))(X, Y)
    template = next(iter(step.templates.values()))
    with pytest.raises(ValueError, match="more than a plan holds"):
        template.graph(10 ** 10)


def test_predictions_and_outputs_for_any_batch_size():
    """A graph without a loss (a prediction) and a step returning (loss, outputs): the
    outputs of a copy are `batch` rows, those of the graph recorded over that batch."""
    a, b = mlp(4, [6, 3]), mlp(4, [6, 3])
    predict_d = cgrad.compile(lambda xs: (None, [a(x) for x in xs]), dynamic=True)
    predict_r = cgrad.compile(lambda xs: (None, [b(x) for x in xs]))
    def scored(model):
        def fn(xs, ys):
            scores = [model(x) for x in xs]
            return losses.softmax_cross_entropy(scores, ys), scores
        return fn
    step_d = cgrad.compile(scored(a), dynamic=True)
    step_r = cgrad.compile(scored(b))
    oa, ob = Adam(a.parameters(), lr=0.05), Adam(b.parameters(), lr=0.05)
    rng = np.random.default_rng(9)
    for batch in (7, 1, 3, 40, 2, 7):
        X, Y = data(rng, "ce", batch, 4, 3)
        got, want = predict_d(X), predict_r(X)
        assert got.shape == want.shape == (batch, 3) and np.array_equal(got, want)
        assert step_d.step(X, Y, optimizer=oa) == step_r.step(X, Y, optimizer=ob)
        outs = step_d.graph_for((X, Y)).outputs()
        assert np.array_equal(outs, step_r.graph_for((X, Y)).outputs())
    assert params_equal(a, b)
    scalar = cgrad.compile(lambda xs: (None, [a(x)[0] for x in xs]), dynamic=True)
    assert scalar(X).shape == (7,)


def micrograd_demo_loss(model):
    """micrograd's demo loss as its notebook writes it: Python's sum() over the
    examples' losses, times 1/len, plus an L2 term summed the same way."""
    def fn(xs, ys):
        scores = [model(x) for x in xs]
        per_example = [(1 + -yi * si).relu() for yi, si in zip(ys, scores)]
        data_loss = sum(per_example) * (1.0 / len(per_example))
        reg_loss = 1e-4 * sum((p * p for p in model.parameters()))
        return data_loss + reg_loss
    return fn


@pytest.mark.parametrize("python_sum_only", [False, True])
def test_python_sum_over_the_examples(python_sum_only):
    """Python's sum() adds the losses one by one, ((L0 + 0) + L1) + ...: each copied
    example adds its loss to the last one's sum, as the eager graph over the batch."""
    if python_sum_only:
        def make(model):
            return lambda xs, ys: sum(losses.cross_entropy(model(x), y)
                                      for x, y in zip(xs, ys))
        kind, nin, nouts = "ce", 3, [5, 3]
    else:
        make, kind, nin, nouts = micrograd_demo_loss, "hinge", 2, [8, 8, 1]
    dynamic, eager = mlp(nin, nouts), mlp(nin, nouts)
    d, e_step = cgrad.compile(make(dynamic), dynamic=True), make(eager)
    od, oe = SGD(dynamic.parameters(), lr=0.05), SGD(eager.parameters(), lr=0.05)
    rng = np.random.default_rng(11)
    for batch in (6, 2, 3, 1, 13, 6):
        X, Y = data(rng, kind, batch, nin, nouts[-1])
        loss = e_step([[cgrad.Value(v) for v in row] for row in X], list(Y))
        oe.zero_grad()
        loss.backward()
        oe.step()
        assert d.step(X, Y, optimizer=od) == loss.data, batch
        assert params_equal(dynamic, eager), batch


@pytest.mark.parametrize("dynamic, first_batch", [(False, 3), (True, 1), (True, 2),
                                                  (True, 5)])
def test_fn_is_traced_over_the_numbers_of_the_call_that_met_its_shape(dynamic,
                                                                       first_batch):
    # a log and a division of an input are defined on the data, not at 0 (where
    # tracing over zero leaves raised ValueError / ZeroDivisionError)
    def per_example(x):
        return x[0].log() + 1 / x[1] + (x[0] * x[1]).sqrt()

    def eager(X):
        return cgrad.sum([per_example([Value(v) for v in row]) for row in X.tolist()]).data

    compiled = cgrad.compile(lambda xs: cgrad.sum([per_example(x) for x in xs]),
                             dynamic=dynamic)
    rng = np.random.RandomState(first_batch)
    for batch in (first_batch, 4, first_batch):
        X = rng.uniform(0.5, 2.0, (batch, 2))
        assert compiled(X) == eager(X), batch


def test_examples_whose_trace_overflows_alone_are_traced_over_zeros():
    # The first two examples' terms overflow when summed alone, but the whole batch
    # holds a NaN, through which eager's sum passes: the step is eager's (NaN), not
    # the two-example trace's OverflowError.
    w = Value(1e308)
    compiled = cgrad.compile(lambda xs: cgrad.sum([x[0] * w for x in xs]), dynamic=True)
    X = np.array([[1.0], [1.0], [float("nan")]])
    want = cgrad.sum([Value(v) * w for v in X[:, 0].tolist()]).data
    assert math.isnan(want) and math.isnan(compiled(X))
    assert compiled(np.array([[0.5], [0.25]])) == 0.75e308      # and it replays
    with pytest.raises(OverflowError, match="sum of 2 values overflows"):
        cgrad.sum([Value(1.0) * w, Value(1.0) * w])            # as the trace alone did
