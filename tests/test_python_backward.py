"""A `_backward` given the micrograd way runs wherever micrograd runs it: on a node
built without children, and when stored through `__dict__` or `vars()`.  The oracle is
micrograd (or the reference engine, written the same way)."""
import math

import pytest

from cgrad import reference
from cgrad.engine import Value

try:
    from micrograd.engine import Value as MicrogradValue
except ImportError:
    MicrogradValue = reference.Value


def childless(V, store):
    """out's value is computed from a, but a is not among its children: its _backward
    closure alone carries the gradient (micrograd runs it: out is in its topo list)."""
    a = V(1.3)
    b = a * 2.0
    out = V(math.sin(b.data) * 3)

    def _backward():
        b.grad += 3 * math.cos(b.data) * out.grad
        b._backward()
    store(out, _backward)
    return a, out


def with_children(V, store):
    a, c = V(0.7), V(-1.1)
    h = a * c
    out = V(math.exp(h.data), (h,), 'exp')

    def _backward():
        h.grad += out.data * out.grad
    store(out, _backward)
    loss = out * a + c
    return (a, c), loss


def by_attribute(v, f):
    v._backward = f


def by_dict(v, f):
    v.__dict__['_backward'] = f


def by_vars(v, f):
    vars(v)['_backward'] = f


@pytest.mark.parametrize("store", [by_attribute, by_dict, by_vars])
def test_a_childless_nodes_backward_runs(store):
    a, out = childless(Value, store)
    ra, ref = childless(MicrogradValue, store)
    out.backward()
    ref.backward()
    assert a.grad == ra.grad != 0.0


@pytest.mark.parametrize("store", [by_attribute, by_dict, by_vars])
def test_a_backward_stored_through_the_dict_runs(store):
    leaves, loss = with_children(Value, store)
    ref_leaves, ref = with_children(MicrogradValue, store)
    loss.backward()
    ref.backward()
    assert [v.grad for v in leaves] == [v.grad for v in ref_leaves]
    assert leaves[0].grad != 0.0


def test_reading_the_dict_does_not_change_a_nodes_gradient():
    """vars(v) is handed out, and nothing is stored: the op's own chain rule runs."""
    a, b = Value(1.5), Value(-2.0)
    out = (a * b).relu()
    vars(out)
    out.__dict__
    vars(a)
    loss = out * a
    loss.backward()
    ra, rb = MicrogradValue(1.5), MicrogradValue(-2.0)
    rloss = (ra * rb).relu() * ra
    rloss.backward()
    rloss.backward()
    assert (a.grad, b.grad) == (ra.grad, rb.grad)
    assert loss._local_grads is not None


def test_a_replay_of_a_node_whose_dict_was_only_read_works():
    import cgrad
    (x,), = cgrad.inputs(1, 1)
    w = Value(0.5)
    h = (w * x).tanh()
    vars(h)
    vars(w)
    vars(x)
    graph = cgrad.Graph(h * h, inputs=[[x]])
    assert graph.forward([[2.0]]) == math.tanh(1.0) ** 2
