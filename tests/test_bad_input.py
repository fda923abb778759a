"""Bad input raises what Python's float and math raise, with a clear message."""
import math

import pytest

from cgrad import Value, dot, sum as vsum


@pytest.mark.parametrize("make, error, words", [
    (lambda: Value('a'), TypeError, "real number"),
    (lambda: Value(None), TypeError, "real number"),
    (lambda: Value(1 + 2j), TypeError, "real number"),
    (lambda: Value(Value(1.0)), TypeError, "real number"),
    (lambda: Value(1) + 'a', TypeError, "unsupported operand"),
    (lambda: 'a' * Value(1), TypeError, "can't multiply"),
    (lambda: Value(1) ** 'a', TypeError, "unsupported operand"),
    (lambda: Value(1) / None, TypeError, "unsupported operand"),
    (lambda: Value(0) ** -1, ZeroDivisionError, "negative power"),
    (lambda: Value(1) / 0, ZeroDivisionError, "division by zero"),
    (lambda: Value(1) / Value(0), ZeroDivisionError, "negative power"),
    (lambda: 1 / Value(0), ZeroDivisionError, "negative power"),
    (lambda: Value(-1).log(), ValueError, "domain"),
    (lambda: Value(0).log(), ValueError, "domain"),
    (lambda: Value(-8) ** 0.5, ValueError, "fractional power"),
    (lambda: Value(-8) ** Value(2.0), ValueError, "base >= 0"),
    (lambda: Value(1000).exp(), OverflowError, r"exp\(1000\.0\) overflows"),
    (lambda: Value(10 ** 400), OverflowError, "too large"),
    (lambda: Value(1) + 10 ** 400, OverflowError, "too large"),
    (lambda: Value(1e308) * 10, OverflowError, "overflows"),
    (lambda: Value(1e308) + 1e308, OverflowError, "overflows"),
    (lambda: Value(10.0) ** 400, OverflowError, "overflows"),
    (lambda: Value(2.0) ** 10 ** 400, OverflowError, "too large"),
    (lambda: dot([Value(1)], [Value(1), Value(2)]), ValueError, "as many weights"),
    (lambda: dot([Value(1)], ['x']), TypeError, "Values or numbers"),
    (lambda: vsum([Value(1), 'x']), TypeError, "Values or numbers"),
    (lambda: Value(1, (3,), '+'), TypeError, "must be Values"),
])
def test_bad_input_raises(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_setters_refuse_non_numbers():
    v = Value(1.0)
    with pytest.raises(TypeError):
        v.data = 'x'
    with pytest.raises(TypeError):
        v.grad = None
    assert v.data == 1.0 and v.grad == 0.0


def test_backward_that_would_divide_by_zero_raises():
    x = Value(0.0)
    y = x ** 0.5  # forward is 0.0; its derivative 0.5 * 0.0 ** -0.5 is not a number
    assert y.data == 0.0
    with pytest.raises(ZeroDivisionError, match="backward"):
        y.backward()


def test_backward_overflow_raises_instead_of_inf():
    b = Value(1e-300)
    out = (Value(1e300) * b) * 1e300  # forward 1e300, but d out / d b = 1e600
    assert out.data == 1e300
    with pytest.raises(OverflowError, match="gradient overflowed"):
        out.backward()
    tiny = Value(1e-320)
    with pytest.raises(OverflowError):
        tiny.log().backward()  # log is finite, 1 / 1e-320 is not


def test_error_leaves_operands_usable():
    a = Value(2.0)
    with pytest.raises(ZeroDivisionError):
        a / 0
    assert (a * 2).data == 4.0


def test_non_finite_inputs_pass_through_as_in_python():
    assert math.isinf((Value(float('inf')) + 1).data)
    assert math.isnan((Value(float('nan')) * 2).data)


@pytest.mark.parametrize("op, kids", [
    ("+", 1), ("*", 3), ("**", 0), ("tanh", 0), ("tanh", 2), ("dot", 3), ("leaf", 1),
    ("no such op", 0), (3, 1),
])
def test_corrupt_pickle_is_refused_not_crashed(op, kids):
    """A pickled node whose children do not fit its op (a + with one child) would make
    the C code read a child that is not there: unpickling refuses it."""
    import pickle
    good = pickle.dumps(Value(1.5) * Value(2.0))
    from cgrad._core import _rebuild, _restore
    with pytest.raises(ValueError, match="corrupt pickled Value"):
        _rebuild(Value, 1.0, 0.0, op, 0.0, 0, tuple(Value(1.0) for _ in range(kids)))
    with pytest.raises(ValueError, match="corrupt pickled Value"):
        _rebuild(Value, 1.0, 0.0, "dot", 0.0, 2, ())  # a dot flagged with a bias it lacks
    with pytest.raises(ValueError, match="corrupt pickled Value"):
        _restore(1.0, 0.0, '', 1, 0.0, 0, (Value(1.0),), '')  # cgrad 0.1's format: + of one
    with pytest.raises(ValueError, match="corrupt pickled Value"):
        _rebuild(int, 1.0, 0.0, "leaf", 0.0, 0, ())
    assert pickle.loads(good).data == 3.0
    for empty in (dot([], []), dot([], [], 2.0), vsum([])):
        assert pickle.loads(pickle.dumps(empty)).data == empty.data
