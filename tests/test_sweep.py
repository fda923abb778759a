"""cgrad.sweep: many trainings in processes (joblib) and on a Dask cluster, each result
bit for bit the serial run's; what a result holds (models, optimizers, Graphs) pickles."""
import os
import pickle
import random
import signal
import sys

import numpy as np
import pytest

import cgrad
from cgrad import losses, nn
from cgrad.optim import SGD, Adam


def train(lr, width, seed, kill_marker=None):
    """A small replayed training run; its result holds the model, the optimizer and the
    Graph.  With kill_marker, the first attempt kills its own process (SIGKILL)."""
    if kill_marker is not None and not os.path.exists(kill_marker):
        open(kill_marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(64, 4)), rng.integers(0, 3, 64)
    model = nn.MLP(4, [width, 3], rng=random.Random(seed))
    optimizer = Adam(model.parameters(), lr=lr)
    xs, ys = cgrad.inputs(16, 4), cgrad.inputs(16, 3)
    graph = cgrad.Graph(losses.softmax_cross_entropy([model(x) for x in xs], ys),
                        inputs=(xs, ys))
    history = [graph.step(X[i:i + 16], np.eye(3)[y[i:i + 16]], optimizer=optimizer)
               for _ in range(5) for i in range(0, 64, 16)]
    return {"config": (lr, width, seed), "history": history, "model": model,
            "optimizer": optimizer, "graph": graph}


GRID = [{"lr": lr, "width": width, "seed": seed}
        for lr in (0.01, 0.05) for width in (4, 8) for seed in (0, 1)]


def numbers(result):
    return (result["config"], result["history"], [p.data for p in result["model"].parameters()])


@pytest.fixture(scope="module")
def serial():
    return [train(**config) for config in GRID]


def test_serial_sweep_is_the_plain_loop(serial):
    assert [numbers(r) for r in cgrad.sweep(train, GRID, n_jobs=1)] == \
        [numbers(r) for r in serial]


def test_processes_give_the_serial_numbers_in_order(serial):
    pytest.importorskip("joblib")
    results = cgrad.sweep(train, GRID, n_jobs=2)
    assert [numbers(r) for r in results] == [numbers(r) for r in serial]
    # what came back through pickle trains on: the Graph, its model and optimizer
    result, twin = results[3], train(**GRID[3])
    X = np.random.default_rng(7).normal(size=(16, 4))
    Y = np.eye(3)[np.arange(16) % 3]
    for r in (result, twin):
        r["last"] = [r["graph"].step(X, Y, optimizer=r["optimizer"]) for _ in range(3)]
    assert result["last"] == twin["last"]


def dask_cluster():
    distributed = pytest.importorskip("dask.distributed")
    pytest.importorskip("joblib")
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    dashboard_address=None)


def test_a_dask_cluster_gives_the_serial_numbers(serial):
    with dask_cluster() as cluster:
        results = cgrad.sweep(train, GRID, backend="dask", address=cluster.scheduler_address)
    assert [numbers(r) for r in results] == [numbers(r) for r in serial]


def test_a_killed_dask_worker_loses_and_repeats_nothing(serial, tmp_path):
    grid = [dict(config) for config in GRID]
    grid[2]["kill_marker"] = str(tmp_path / "killed once")
    with dask_cluster() as cluster:
        results = cgrad.sweep(train, grid, backend="dask", address=cluster.scheduler_address)
    assert os.path.exists(grid[2]["kill_marker"])       # a worker did die
    assert [numbers(r) for r in results] == [numbers(r) for r in serial]


def test_mistakes_get_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="backend must be"):
        cgrad.sweep(train, GRID, backend="threads")
    with pytest.raises(ValueError, match="backend='dask'"):
        cgrad.sweep(train, GRID, address="tcp://127.0.0.1:8786")
    monkeypatch.setitem(sys.modules, "joblib", None)     # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'cgrad\[sweep\]'"):
        cgrad.sweep(train, GRID)


# ---- what a result holds pickles, and trains on as if never pickled ---------------------

@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: Adam(ps, lr=0.05)], ids=["SGD", "Adam"])
def test_an_optimizer_pickled_mid_training_goes_on_as_the_original(make):
    random.seed(0)
    model = nn.MLP(3, [5, 1])
    optimizer = make(model.parameters())
    x = [0.5, -1.0, 2.0]

    def step(model, optimizer):
        optimizer.zero_grad()
        loss = model(x) ** 2
        loss.backward()
        optimizer.step()
        return loss.data

    for _ in range(3):
        step(model, optimizer)
    model2, optimizer2 = pickle.loads(pickle.dumps((model, optimizer)))
    assert [step(model, optimizer) for _ in range(4)] == \
        [step(model2, optimizer2) for _ in range(4)]


def test_a_corrupt_pickled_optimizer_state_is_refused():
    from cgrad._optim import _rebuild_parameter_array
    with pytest.raises(ValueError, match="corrupt pickled optimizer"):
        _rebuild_parameter_array((cgrad.Value(1.0),), 2, b"\0" * 8)


@pytest.mark.parametrize("grouped", [True, False])
def test_a_pickled_graph_replays_as_the_original(grouped):
    random.seed(1)
    model = nn.MLP(3, [4, 2])
    xs = cgrad.inputs(5, 3)
    scores = [model(x) for x in xs]
    loss = cgrad.sum(s for row in scores for s in row) ** 2
    graph = (cgrad.Graph(loss, inputs=(xs,), outputs=scores, input_grads=False) if grouped
             else cgrad.Graph(None, inputs=xs, outputs=scores[0][0]))
    clone = pickle.loads(pickle.dumps(graph))
    assert clone.input_shapes == graph.input_shapes
    X = np.random.default_rng(0).normal(size=(5, 3))
    for g in (graph, clone):
        g.forward(X)
    assert np.array_equal(clone.outputs(), graph.outputs())
    if grouped:
        graph.backward()
        clone.backward()
        clone_leaves = [v for v in clone.loss._prev]
        assert clone.loss.data == graph.loss.data and clone_leaves
        assert [x.grad for row in xs for x in row] == [0.0] * 15   # input_grads=False kept
