"""microgpt's Value API on cgrad: Value(data, children, local_grads), _children and
_local_grads, and Karpathy's microgpt run unchanged on cgrad's Value.

Oracles: microgpt's own pure-Python Value (cgrad.programs.microgpt.MicrogptValue),
central differences, and PyTorch float64 where installed."""
import copy
import math
import pickle

import pytest

import cgrad
from cgrad import Value
from cgrad.datasets import make_names
from cgrad.programs.microgpt import MicrogptValue, run
from conftest import central_difference, close


def tanh(self):
    """A new op, added the microgpt way: its local gradient recorded at forward time."""
    t = math.tanh(self.data)
    return type(self)(t, (self,), (1 - t * t,))


def smooth_max(self, other):
    """A two-input op added the microgpt way (log(e^a + e^b), local grads the softmax)."""
    m = max(self.data, other.data)
    ea, eb = math.exp(self.data - m), math.exp(other.data - m)
    return type(self)(m + math.log(ea + eb), (self, other), (ea / (ea + eb), eb / (ea + eb)))


def weighted3(a, b, c):
    """Three inputs, local gradients given by keyword."""
    V = type(a)
    return V(2 * a.data - b.data + 0.5 * c.data, children=(a, b, c), local_grads=(2, -1, 0.5))


def program(V, xs):
    """Custom ops mixed with built-in ones, as a microgpt derivative writes them."""
    a, b, c = (V(x) for x in xs)
    h = tanh(a * b + c) * 3 + smooth_max(a, c * c)
    g = weighted3(h, tanh(b), a.exp()) * h + (b - 1.5) ** 2
    return (a, b, c), g


def test_local_grads_match_microgpts_own_value_bit_for_bit():
    for xs in ([0.3, -1.2, 0.7], [1.5, 0.25, -2.0], [-0.1, 2.2, 0.05]):
        ours, out = program(Value, xs)
        theirs, ref = program(MicrogptValue, xs)
        out.backward()
        ref.backward()
        assert out.data == ref.data
        assert [v.grad for v in ours] == [v.grad for v in theirs]


def test_local_grads_match_finite_differences():
    xs = [0.3, -1.2, 0.7]
    leaves, out = program(Value, xs)
    out.backward()
    for i, leaf in enumerate(leaves):
        expected = central_difference(lambda ys: program(Value, ys)[1].data, xs, i)
        assert close(leaf.grad, expected, rel=1e-6, abs_=1e-8)


def test_local_grads_match_torch_float64():
    torch = pytest.importorskip("torch")
    xs = [0.3, -1.2, 0.7]
    leaves, out = program(Value, xs)
    out.backward()
    a, b, c = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs)
    h = torch.tanh(a * b + c) * 3 + torch.logsumexp(torch.stack([a, c * c]), 0)
    g = (2 * h - torch.tanh(b) + 0.5 * torch.exp(a)) * h + (b - 1.5) ** 2
    g.backward()
    assert close(out.data, g.item(), rel=1e-13)
    for leaf, t in zip(leaves, (a, b, c)):
        assert close(leaf.grad, t.grad.item(), rel=1e-12)


def test_the_three_ways_to_give_the_arguments():
    a, b = Value(2.0), Value(3.0)
    positional = Value(6.0, (a, b), (3.0, 2.0))
    keywords = Value(6.0, children=(a, b), local_grads=(3.0, 2.0))
    mixed = Value(6.0, (a, b), local_grads=[3, 2])
    for out in (positional, keywords, mixed):
        a.grad = b.grad = 0.0
        out.backward()
        assert (a.grad, b.grad) == (3.0, 2.0)
        assert out._children == (a, b)
        assert out._local_grads == (3.0, 2.0)
        assert out._prev == {a, b}


def test_a_str_is_still_micrograds_op_label():
    a = Value(2.0)
    out = Value(4.0, (a,), 'sq')
    assert out._op == 'sq'
    assert out._local_grads is None   # no chain rule of its own until one is assigned
    out.backward()
    assert a.grad == 0.0               # micrograd's default _backward does nothing


def test_local_grads_on_cgrads_own_ops_are_the_derivatives():
    a, b = Value(1.5), Value(-0.5)
    cases = [
        (a + b, (1.0, 1.0)),
        (a * b, (-0.5, 1.5)),
        (a ** 3, (3 * 1.5 ** 2,)),
        (a.exp(), (math.exp(1.5),)),
        (a.log(), (1 / 1.5,)),
        (b.relu(), (0.0,)),
        (a.relu(), (1.0,)),
        (a.tanh(), (1 - math.tanh(1.5) ** 2,)),
        (cgrad.sum([a, b, 2.0]), (1.0, 1.0, 1.0)),
        (cgrad.dot([a, b], [b, a]), (-0.5, 1.5, 1.5, -0.5)),
        (Value(7.0), ()),
    ]
    for out, expected in cases:
        assert out._local_grads == pytest.approx(expected, rel=1e-15)
        assert len(out._children) == len(expected)


def test_local_grads_of_a_layer_neuron_reach_through_its_rows():
    from cgrad.nn import Neuron
    n = Neuron(3, activation='linear')
    x = [Value(0.5), Value(-1.0), Value(2.0)]
    out = n(x)
    kids = out._children
    assert set(kids) == out._prev
    grads = out._local_grads
    assert len(grads) == len(kids)
    out.backward()
    for kid, g in zip(kids, grads):   # each kid appears once: its grad is its local grad
        assert kid.grad == g


def test_higher_order_treats_local_grads_as_constants():
    x = Value(0.8)
    t = math.tanh(x.data)
    y = Value(t, (x,), (1 - t * t,)) * x          # y = tanh(x) * x, tanh's slope frozen
    (dx,) = cgrad.grad(y, [x], create_graph=True)
    assert close(dx.data, (1 - t * t) * x.data + t, rel=1e-15)
    (ddx,) = cgrad.grad(dx, [x])
    # dx = L + c * x, L the local node (slope c = 1 - t*t, a constant): d(dx)/dx = 2c
    assert close(ddx, 2 * (1 - t * t), rel=1e-15)


def test_replay_refuses_a_local_grads_node_with_a_clear_error():
    x = cgrad.inputs(1, 1)[0][0]
    w = Value(0.5)
    t = math.tanh(w.data * x.data)
    loss = Value(t, (w * x,), (1 - t * t,))
    with pytest.raises(TypeError, match="local_grads"):
        cgrad.Graph(loss, inputs=[[x]])


@pytest.mark.parametrize("bad, error, match", [
    (((Value(1.0),), ()), ValueError, "one local gradient per child"),
    (((Value(1.0), Value(2.0)), (1.0,)), ValueError, "one local gradient per child"),
    (((), (1.0,)), ValueError, "one local gradient per child"),
    (((Value(1.0),), ("x",)), TypeError, "must be a real number"),
    (((Value(1.0),), (Value(2.0),)), TypeError, "not a Value"),
    (((Value(1.0),), 3.0), TypeError, "micrograd's _op .* or microgpt's local_grads"),
    (((Value(1.0),), (None,)), TypeError, "must be a real number"),
])
def test_bad_local_grads_get_clear_errors(bad, error, match):
    children, grads = bad
    with pytest.raises(error, match=match):
        Value(1.0, children, grads)


def test_both_names_for_one_argument_are_refused():
    a = Value(1.0)
    with pytest.raises(TypeError, match="both"):
        Value(1.0, (a,), children=(a,))
    with pytest.raises(TypeError, match="both"):
        Value(1.0, (a,), 'f', local_grads=(1.0,))


def test_a_failed_init_leaves_the_node_as_it_was():
    a, b = Value(2.0), Value(3.0)
    out = a * b
    with pytest.raises(ValueError):
        out.__init__(1.0, (a,), (1.0, 2.0))
    assert out.data == 6.0 and out._children == (a, b)


def test_local_nodes_pickle_and_copy():
    a, b = Value(2.0), Value(3.0)
    out = Value(6.0, (a, b), (3.0, 2.0)) * Value(5.0, (a,), (0.25,))
    for clone in (pickle.loads(pickle.dumps(out)), copy.deepcopy(out)):
        clone.backward()
        ca, cb = clone._children[0]._children
        assert clone.data == 30.0
        assert ca.grad == 3.0 * 5.0 + 0.25 * 6.0 and cb.grad == 2.0 * 5.0


def test_a_deep_chain_of_local_nodes_builds_backwards_and_frees():
    x = Value(1.0)
    y = x
    for _ in range(200_000):
        y = Value(y.data, (y,), (1.0,))
    y = Value(y.data + 1.0, (y, x), (1.0, 1.0))
    y.backward()
    assert x.grad == 2.0
    del y


def test_non_finite_local_grads_pass_through_as_in_microgpt():
    a = Value(1.0)
    out = Value(1.0, (a,), (float("inf"),))
    out.backward()
    assert a.grad == float("inf")


def test_microgpt_unchanged_trains_bit_for_bit():
    """Karpathy's program, its Value class replaced by cgrad's: every step's loss, every
    parameter after training and the sampled names equal its own engine's."""
    docs = make_names(200, seed=3)
    kwargs = dict(num_steps=4, n_embd=8, n_head=2, block_size=8, num_samples=3)
    theirs = run(MicrogptValue, docs, **kwargs)
    ours = run(Value, docs, **kwargs)
    assert ours["losses"] == theirs["losses"]
    assert ours["params"] == theirs["params"]
    assert ours["samples"] == theirs["samples"]


def test_microgpt_with_an_op_added_the_microgpt_way(monkeypatch):
    """A derivative that adds tanh as microgpt adds ops, on both engines."""
    monkeypatch.setattr(MicrogptValue, "relu", tanh)
    monkeypatch.setattr(Value, "relu", tanh)
    docs = make_names(100, seed=4)
    kwargs = dict(num_steps=2, n_embd=8, n_head=2, block_size=8, num_samples=1)
    assert run(Value, docs, **kwargs) == run(MicrogptValue, docs, **kwargs)
