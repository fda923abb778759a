"""micrograd's Value API, attribute by attribute."""
import copy
import pickle

import numpy as np
import pytest

from cgrad import Value
from cgrad.engine import Value as EngineValue


def test_both_import_paths_give_the_same_class():
    assert EngineValue is Value


def test_constructor_attributes_and_repr():
    v = Value(2, label='x')
    assert v.data == 2.0 and isinstance(v.data, float)
    assert v.grad == 0.0 and v.label == 'x' and v._op == '' and v._prev == set()
    assert repr(v) == "Value(data=2.0, grad=0.0)"
    assert Value(1.5).label == ''


def test_data_grad_label_are_writable():
    v = Value(1.0)
    v.data += 0.5
    v.grad = 3
    v.label = 'w'
    assert (v.data, v.grad, v.label) == (1.5, 3.0, 'w')


def test_prev_holds_the_very_children():
    a, b = Value(2.0), Value(3.0)
    c = a * b
    assert a in c._prev and b in c._prev and len(c._prev) == 2
    d = a + a
    assert d._prev == {a}


@pytest.mark.parametrize("make, op", [
    (lambda a, b: a + b, '+'), (lambda a, b: a * b, '*'), (lambda a, b: a ** 2, '**2'),
    (lambda a, b: a ** 0.5, '**0.5'), (lambda a, b: a ** -1, '**-1'),
    (lambda a, b: a.relu(), 'ReLU'), (lambda a, b: a.tanh(), 'tanh'),
    (lambda a, b: a.exp(), 'exp'), (lambda a, b: a.log(), 'log'),
    (lambda a, b: a.sigmoid(), 'sigmoid'), (lambda a, b: a ** b, '**'),
    (lambda a, b: a ** np.int64(3), '**3'),
])
def test_op_strings_match_micrograd(make, op):
    assert make(Value(2.0), Value(3.0))._op == op


def test_decomposition_is_micrograds():
    a, b = Value(2.0), Value(3.0)
    neg = -a
    assert neg._op == '*' and {p.data for p in neg._prev} == {2.0, -1.0}
    sub = a - b
    assert sub._op == '+' and b not in sub._prev
    (negb,) = [p for p in sub._prev if p is not a]
    assert negb._op == '*' and b in negb._prev
    div = a / b
    assert div._op == '*' and any(p._op == '**-1' for p in div._prev)
    assert {p.data for p in (a / 2)._prev} == {2.0, 0.5}
    assert {p.data for p in (a - 2)._prev} == {2.0, -2.0}


@pytest.mark.parametrize("number", [2, 2.0, np.int64(2), np.float64(2.0), np.float32(2.0), True])
def test_numbers_on_either_side(number):
    a = Value(3.0)
    for out in (a + number, number + a, a * number, number * a, a - number, number - a,
                a / number, number / a, number ** a):
        assert type(out) is Value
    assert (number * a).data == 3.0 * float(number)
    assert (number - a).data == float(number) - 3.0


def test_sum_and_zero_plus_value():
    vs = [Value(float(i)) for i in range(5)]
    s = sum(vs)
    assert type(s) is Value and s.data == 10.0
    assert (0 + vs[1]).data == 1.0


def test_hand_built_node_keeps_children_and_op():
    a, b = Value(1.0), Value(2.0)
    c = Value(3.0, (a, b), '+', label='c')
    assert c._prev == {a, b} and c._op == '+' and c.label == 'c'
    c.grad = 1.0
    c.backward()  # no known math: gradients stop there, as micrograd's default lambda
    assert a.grad == 0.0


def test_values_hash_by_identity():
    a, b = Value(1.0), Value(1.0)
    assert len({a, b}) == 2 and a in {a}


def test_pickle_and_deepcopy_keep_graph_and_values():
    a = Value(2.0, label='a')
    c = (a * 3).tanh()
    c.label = 'c'
    c.backward()
    for clone in (pickle.loads(pickle.dumps(c)), copy.deepcopy(c)):
        assert clone is not c
        assert (clone.data, clone.grad, clone.label, clone._op) == (c.data, c.grad, 'c', 'tanh')
        (mul,) = clone._prev
        assert mul._op == '*' and {p.data for p in mul._prev} == {2.0, 3.0}
        original = sorted(p.grad for p in next(iter(c._prev))._prev)
        assert sorted(p.grad for p in mul._prev) == original   # grads travel along
        clone.backward()   # the clone's own graph: its leaf grads accumulate, c's do not
        assert sorted(p.grad for p in mul._prev) == [2 * g for g in original]
        assert sorted(p.grad for p in next(iter(c._prev))._prev) == original


def test_numpy_array_operand_is_refused():
    with pytest.raises(TypeError):
        Value(1.0) + np.array([1.0, 2.0])
