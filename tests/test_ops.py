"""Single facts about ops: stability, ties and zeros, accumulation (every op in every mode:
test_op_table.py)."""
import math

from cgrad import Value


def test_tanh_is_stable_at_large_inputs():
    assert Value(1000).tanh().data == 1.0
    assert Value(-1000).tanh().data == -1.0
    assert Value(-1000).sigmoid().data == 0.0
    assert Value(1000).sigmoid().data == 1.0


def test_relu_at_zero_passes_no_gradient():
    x = Value(0.0)
    y = x.relu()
    y.backward()
    assert y.data == 0.0 and x.grad == 0.0


def test_powv_zero_base_has_zero_exponent_gradient():
    a, b = Value(0.0), Value(2.0)
    (a ** b).backward()
    assert (a.grad, b.grad) == (0.0, 0.0)


def test_leaf_grads_accumulate_and_interior_grads_reset():
    a, b = Value(2.0), Value(-3.0)
    mid = a * b
    out = mid + a
    out.backward()
    first = (a.grad, b.grad, mid.grad)
    out.backward()
    assert (a.grad, b.grad) == (2 * first[0], 2 * first[1])
    assert mid.grad == first[2] == 1.0


def test_backward_on_a_leaf_sets_its_grad_to_one():
    a = Value(4.0)
    a.backward()
    assert a.grad == 1.0


def test_manual_backward_calls_apply_the_local_chain_rule():
    a, b = Value(2.0), Value(-3.0)
    c = a * b
    c.grad = 1.0
    c._backward()
    assert (a.grad, b.grad) == (-3.0, 2.0)
    t = Value(0.5).tanh()
    t.grad = 2.0
    (x,) = t._prev
    t._backward()
    assert x.grad == (1 - math.tanh(0.5) ** 2) * 2.0
