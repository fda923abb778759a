"""Code that extends Value the micrograd way: custom ops with `_backward` closures,
methods added to the class, subclasses, attributes, weak references.

The oracle is micrograd itself (its Value extended with the very same code) when it is
installed, else cgrad's pure-Python reference engine, which is written the same way."""
import gc
import math
import pickle
import sys
import weakref

import pytest

import cgrad
from cgrad import reference
from cgrad._core import _memory_layout
from cgrad.engine import Value

try:
    from micrograd.engine import Value as MicrogradValue
except ImportError:
    MicrogradValue = reference.Value


def sin(self):
    """A custom op, written as micrograd's own ops are."""
    out = type(self)(math.sin(self.data), (self,), 'sin')

    def _backward():
        self.grad += math.cos(self.data) * out.grad
    out._backward = _backward
    return out


def lecture_tanh(self):
    """tanh as Karpathy's lecture writes it: a formula, then its derivative by hand."""
    x = self.data
    t = (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1)
    out = type(self)(t, (self,), 'tanh')

    def _backward():
        self.grad += (1 - t**2) * out.grad
    out._backward = _backward
    return out


def expression(V, a, b):
    """A graph mixing the custom ops with built-in ones (C ops in cgrad)."""
    x, y = V(a), V(b)
    h = (x * y + x.sin()).tanh2() * 3 + y ** 2
    g = (h.sin() * x - y * 0.5).tanh2() + x.sin().sin()
    return [x, y], g


@pytest.fixture
def extended(monkeypatch):
    for V in (Value, MicrogradValue):
        monkeypatch.setattr(V, "sin", sin, raising=False)
        monkeypatch.setattr(V, "tanh2", lecture_tanh, raising=False)


@pytest.mark.parametrize("a, b", [(0.3, -1.2), (2.0, 0.5), (-0.7, 0.1)])
def test_custom_ops_give_microgrades_numbers_mixed_with_c_ops(extended, a, b):
    (x, y), g = expression(Value, a, b)
    (mx, my), mg = expression(MicrogradValue, a, b)
    g.backward()
    mg.backward()
    assert g.data == mg.data
    # micrograd adds a shared node's contributions in set-iteration order
    assert (x.grad, y.grad) == pytest.approx((mx.grad, my.grad), rel=1e-12)
    assert g._op == '+' and sorted(p._op for p in g._prev) == ['sin', 'tanh']


def test_custom_op_against_hand_derived_derivative(extended):
    x = Value(0.4)
    y = (x * x).sin()             # d/dx sin(x^2) = 2x cos(x^2)
    y.backward()
    assert y.data == math.sin(0.4 * 0.4)
    assert math.isclose(x.grad, 2 * 0.4 * math.cos(0.16), rel_tol=1e-15)


def test_custom_op_inside_fused_nodes(extended):
    xs = [Value(v) for v in (0.1, -0.4, 0.9)]
    out = cgrad.dot([x.sin() for x in xs], [1.0, 2.0, 3.0], 0.5)
    total = cgrad.sum([out, out.sin()])
    total.backward()
    c = math.cos(out.data)
    for x, w in zip(xs, (1.0, 2.0, 3.0)):
        assert math.isclose(x.grad, (1 + c) * w * math.cos(x.data), rel_tol=1e-14)


def test_assigning_backward_replaces_a_c_ops_chain_rule():
    a, b = Value(2.0), Value(3.0)
    out = a * b

    def _backward():                       # a deliberately different rule
        a.grad += 10 * out.grad
    out._backward = _backward
    out.backward()
    assert (a.grad, b.grad) == (10.0, 0.0)
    del out._backward                      # back to the op's own rule
    a.grad = b.grad = 0.0
    out.backward()
    assert (a.grad, b.grad) == (3.0, 2.0)


def test_a_hand_built_node_without_backward_passes_no_gradient_as_in_micrograd():
    a = Value(2.0)
    out = Value(a.data * 2, (a,), 'double') * 3
    out.backward()
    assert a.grad == 0.0 and sorted(k._op for k in out._prev) == ['', 'double']


def test_an_error_in_a_python_backward_reaches_the_caller(extended):
    x = Value(1.0)
    out = x.sin()

    def broken():
        raise KeyError("from the user's _backward")
    out._backward = broken
    with pytest.raises(KeyError, match="from the user"):
        (out * 2).backward()


def test_reinitialising_a_node_during_its_graphs_sweep_is_refused():
    a = Value(1.0)
    mid = a * 2
    top = Value(mid.data, (mid,), 'f')

    def rewire():
        mid.__init__(5.0)                  # would free nodes the sweep still holds
    top._backward = rewire
    with pytest.raises(RuntimeError, match="re-initialised while"):
        top.backward()


def test_subclass_like_microgrades_users_write(extended):
    class ValueExt(Value):
        def sigmoid2(self):
            return 1 / (1 + (-self).exp())

    x = ValueExt(0.3)
    s = x.sigmoid2() * x.sin()
    s.backward()
    m = MicrogradValue(0.3)
    ms = (1 / (1 + (-m).exp())) * m.sin() if hasattr(m, "exp") else None
    if ms is not None:
        ms.backward()
        assert s.data == ms.data and x.grad == pytest.approx(m.grad, rel=1e-12)
    assert isinstance(x, Value) and type(x) is ValueExt
    assert type(s) is Value                # ops make plain Values, as in micrograd


class Named(Value):
    """A subclass at module level, so that pickle can find it."""


def test_subclass_instances_pickle_as_themselves():
    v = Named(1.5)
    v.name = "w0"
    clone = pickle.loads(pickle.dumps(v * 2 + v))
    assert clone.data == 4.5
    (kid,) = [k for k in clone._prev if k._op == '*']
    leaf = next(k for k in kid._prev if k.data == 1.5)
    assert type(leaf) is Named and leaf.name == "w0"


def test_attributes_labels_and_vars():
    v = Value(2.0, label='a')
    v.name = 'w0'
    assert (v.label, v.name) == ('a', 'w0')
    assert vars(v) == {'label': 'a', 'name': 'w0'}
    w = v * 2
    assert w.label == ''
    w.label = 'w'
    assert w.label == 'w'
    del v.name
    with pytest.raises(AttributeError):
        v.name
    clone = pickle.loads(pickle.dumps(v))
    assert (clone.label, clone.data) == ('a', 2.0)


def test_weak_references():
    v = Value(1.0)
    ref = weakref.ref(v)
    table = weakref.WeakKeyDictionary({v: "param"})
    values = weakref.WeakValueDictionary({"v": v})
    assert ref() is v and table[v] == "param" and values["v"] is v
    del v
    gc.collect()
    assert ref() is None and len(table) == 0 and len(values) == 0


def test_freeing_a_node_runs_weakref_callbacks_and_attribute_finalizers():
    seen = []

    class Noisy:
        def __del__(self):
            seen.append("attribute finalized")
            try:
                raise KeyError("inside a finalizer")
            except KeyError:
                pass

    v = Value(1.0)
    v.extra = Noisy()
    parent = v * 2.0
    ref = weakref.ref(parent, lambda r: seen.append("weakref callback"))
    try:
        raise ValueError("being handled")
    except ValueError as error:
        del v, parent                  # parent goes, then its kid v and v's attribute
        assert sys.exc_info()[1] is error
    assert seen == ["weakref callback", "attribute finalized"]
    assert ref() is None


def test_backward_closure_cycles_are_collected(extended):
    x = Value(0.5)
    out = x.sin()                          # out -> its dict -> closure -> out
    ref = weakref.ref(out)
    assert gc.is_tracked(out)
    del out
    gc.collect()
    assert ref() is None


def test_a_cycle_through_a_parent_of_a_tracked_node_is_collected():
    v = Value(1.0)
    v.box = []                             # a container: v is tracked from here on
    parent = v * 2                         # built over a tracked node: tracked too
    v.box.append(parent)                   # parent -> v -> dict -> box -> parent
    assert gc.is_tracked(parent)
    refs = weakref.ref(v), weakref.ref(parent)
    del v, parent
    gc.collect()
    assert refs[0]() is None and refs[1]() is None


def test_plain_nodes_stay_out_of_the_cyclic_gc():
    a, b = Value(1.0), Value(2.0, label='b')  # a label is an atom: no cycle possible
    assert not gc.is_tracked(a) and not gc.is_tracked(b)
    assert not gc.is_tracked((a * b + a).tanh())
    assert not gc.is_tracked(cgrad.sum([a, b]))


def test_a_node_is_at_most_96_bytes():
    import sys
    per_value, _ = _memory_layout()
    assert per_value <= 96 and sys.getsizeof(Value(1.0)) <= 96


def test_replay_refuses_a_python_backward_clearly(extended):
    x = cgrad.inputs(1)
    w = Value(0.5)
    loss = (w * x[0]).sin()
    with pytest.raises(TypeError, match="Python _backward"):
        cgrad.Graph(loss, inputs=x)
