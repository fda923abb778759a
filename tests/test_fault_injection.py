"""Out of memory at every allocation in turn: each call either finishes or raises, and
afterwards every reference count is what it was and new Values are new objects.

CPython's _testcapi.set_nomemory(start, stop) makes the allocations numbered
[start, stop) fail; walking start from 1 up fails each allocation of a call once."""
import sys

import numpy as np
import pytest

import cgrad
from cgrad import Graph, Value, inputs, losses, nn
from cgrad.optim import SGD, Adam

_testcapi = pytest.importorskip("_testcapi")

MAX_ALLOCATIONS = 600


def fail_each_allocation(call, watched):
    """Run call() once per allocation, failing that allocation; check the watched
    objects' reference counts and the allocator afterwards."""
    counts = [sys.getrefcount(o) for o in watched]
    finished = False
    for start in range(1, MAX_ALLOCATIONS):
        _testcapi.set_nomemory(start, start + 1)
        try:
            call()
            finished = True
        except MemoryError:
            pass
        except Exception as error:  # noqa: BLE001 - only its type and text matter here
            if "memory" not in str(error).lower() and not isinstance(error, MemoryError):
                raise
        finally:
            _testcapi.remove_mem_hooks()
        assert [sys.getrefcount(o) for o in watched] == counts, f"allocation {start}"
        a, b = Value(1.0), Value(2.0)
        assert a is not b and (a.data, b.data) == (1.0, 2.0)
        assert (Value(2.0) * 3).data == 6.0
        if finished:
            return start
    pytest.fail(f"the call still ran out of memory after {MAX_ALLOCATIONS} allocations")


@pytest.fixture
def model():
    return nn.MLP(3, [4, 2])


def test_graph(model):
    xs, ys = inputs(2, 3), inputs(2, 2)
    loss = losses.softmax_cross_entropy([model(x) for x in xs], ys)
    watched = [loss] + model.parameters() + [v for row in xs + ys for v in row]
    assert fail_each_allocation(lambda: Graph(loss, inputs=(xs, ys)), watched) > 1
    graph = Graph(loss, inputs=(xs, ys))
    loss_value = graph.forward(np.ones((2, 3)), np.eye(2))
    assert loss_value == losses.softmax_cross_entropy(
        [model([1.0, 1.0, 1.0])] * 2, [[1.0, 0.0], [0.0, 1.0]]).data


def test_inputs():
    assert fail_each_allocation(lambda: inputs(3, 4), []) > 1


def test_fused_nodes(model):
    ws, xs = model.parameters()[:3], [Value(0.5), Value(-1.0), Value(2.0)]
    watched = ws + xs
    fail_each_allocation(lambda: cgrad.dot(ws, xs, 1.0), watched)
    fail_each_allocation(lambda: cgrad.sum(ws + xs), watched)
    fail_each_allocation(lambda: cgrad.logsumexp(xs), watched)


def test_backward(model):
    x = [Value(0.5), Value(-1.0), Value(2.0)]
    loss = cgrad.sum(model(x))
    fail_each_allocation(loss.backward, model.parameters() + x + [loss])


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: Adam(ps, lr=0.1)])
def test_optimizers(model, make):
    params = model.parameters()
    fail_each_allocation(lambda: make(params), params)
    opt = make(params)
    fail_each_allocation(opt.step, params + [opt])


def test_load(model, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    fail_each_allocation(lambda: nn.load(path), model.parameters())
    assert (nn.load(path).get_parameters() == model.get_parameters()).all()
