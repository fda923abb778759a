"""The fused n-ary nodes (dot, sum, logsumexp): values and gradients against the
reference engine's unfused graph, finite differences and PyTorch float64."""
import math
import random

import pytest

import cgrad
from cgrad import Value, reference
from conftest import central_difference, close


def draws(n, seed):
    rng = random.Random(seed)
    return [rng.uniform(-2, 2) for _ in range(n)]


def combine(outs):
    """A linear map's outputs as one number, weighted so that each one's gradient shows."""
    return outs[0] + outs[1] * -2.0 + outs[2] * 0.5


# name -> (fused function of a list of Values, the same written with the reference's ops)
FUSED = {
    'dot': (lambda v: cgrad.dot(v[:4], v[4:8], v[8]),
            lambda v: sum((w * x for w, x in zip(v[:4], v[4:8])), v[8])),
    'dot_no_bias': (lambda v: cgrad.dot(v[:4], v[4:8]),
                    lambda v: sum(w * x for w, x in zip(v[:4], v[4:8]))),
    'dot_shared': (lambda v: cgrad.dot([v[0], v[1], v[0]], [v[1], v[0], v[2]], v[0]),
                   lambda v: sum((w * x for w, x in zip([v[0], v[1], v[0]],
                                                        [v[1], v[0], v[2]])), v[0])),
    'linear': (lambda v: combine(cgrad.linear([v[:3], v[3:6], [v[0], v[6], v[7]]], v[6:9])),
               lambda v: combine([sum(w * x for w, x in zip(row, v[6:9]))
                                  for row in (v[:3], v[3:6], [v[0], v[6], v[7]])])),
    'sum': (lambda v: cgrad.sum(v) * v[0],
            lambda v: sum(v) * v[0]),
    'sum_numbers': (lambda v: cgrad.sum([v[0], 2.5, v[1], -1]) ** 2,
                    lambda v: (v[0] + 2.5 + v[1] + -1) ** 2),
}
LOGSUMEXP = (lambda v: cgrad.logsumexp(v[:5]) * v[5],
             lambda v: sum(x.exp() for x in v[:5]).log() * v[5])


def run(f, values, engine):
    xs = [engine.Value(x) for x in values]
    out = f(xs)
    out.backward()
    return out.data, [x.grad for x in xs]


@pytest.mark.parametrize("name", FUSED)
def test_fused_value_is_the_unfused_value_bit_for_bit(name):
    fused, unfused = FUSED[name]
    for seed in range(20):
        values = draws(9, seed)
        data, grads = run(fused, values, cgrad)
        ref_data, ref_grads = run(unfused, values, reference)
        assert data == ref_data
        assert grads == pytest.approx(ref_grads, rel=1e-13, abs=1e-13)


def test_logsumexp_equals_log_sum_exp_and_survives_large_values():
    fused, unfused = LOGSUMEXP
    for seed in range(20):
        values = draws(6, seed)
        data, grads = run(fused, values, cgrad)
        ref_data, ref_grads = run(unfused, values, reference)
        assert close(data, ref_data, rel=1e-14)
        assert grads == pytest.approx(ref_grads, rel=1e-12, abs=1e-14)
    big = [Value(1000.0), Value(999.0)]
    out = cgrad.logsumexp(big)
    assert out.data == pytest.approx(1000.0 + math.log1p(math.exp(-1.0)), rel=1e-15)
    out.backward()
    assert big[0].grad + big[1].grad == pytest.approx(1.0)


@pytest.mark.parametrize("name", list(FUSED) + ["logsumexp"])
def test_fused_grad_equals_finite_differences(name):
    fused = LOGSUMEXP[0] if name == "logsumexp" else FUSED[name][0]
    values = draws(9, 99)
    _, grads = run(fused, values, cgrad)
    as_float = lambda xs: fused([Value(x) for x in xs]).data
    for i, g in enumerate(grads):
        assert close(g, central_difference(as_float, values, i), rel=1e-6, abs_=1e-7), i


def test_fused_nodes_match_torch_float64():
    torch = pytest.importorskip("torch")
    values = draws(9, 5)
    for fused, torch_f in [
        (FUSED['dot'][0], lambda t: torch.dot(t[:4], t[4:8]) + t[8]),
        (FUSED['sum'][0], lambda t: t.sum() * t[0]),
        (LOGSUMEXP[0], lambda t: torch.logsumexp(t[:5], 0) * t[5]),
    ]:
        data, grads = run(fused, values, cgrad)
        t = torch.tensor(values, dtype=torch.float64, requires_grad=True)
        out = torch_f(t)
        out.backward()
        assert close(data, out.item(), rel=1e-14)
        assert grads == pytest.approx(t.grad.tolist(), rel=1e-12, abs=1e-15)


def test_fused_nodes_show_their_children():
    w, x, b = Value(2.0), Value(3.0), Value(1.0)
    node = cgrad.dot([w], [x], b)
    assert node._prev == {w, x, b} and node._op == 'dot'
    assert cgrad.logsumexp([w, x])._op == 'logsumexp'
    with pytest.raises(ValueError, match="at least one"):
        cgrad.logsumexp([])
    with pytest.raises(TypeError, match="Values or numbers"):
        cgrad.logsumexp([w, "x"])
    with pytest.raises(TypeError, match="Values or numbers"):
        cgrad.sum(v for v in [w, None])


def test_linear_is_flat_dots_bit_for_bit_and_checks_widths():
    rows = [[Value(w) for w in draws(5, seed)] for seed in range(4)]
    x = [Value(v) for v in draws(5, 9)]
    out = cgrad.linear(rows, x)
    flat = [cgrad.dot(row, x) for row in rows]
    assert [o.data for o in out] == [f.data for f in flat]
    assert [o._op for o in out] == ["dot"] * 4
    cgrad.sum(out).backward()
    grads = [v.grad for v in x] + [w.grad for row in rows for w in row]
    for v in x + [w for row in rows for w in row]:
        v.grad = 0.0
    cgrad.sum(flat).backward()
    assert grads == [v.grad for v in x] + [w.grad for row in rows for w in row]
    assert cgrad.linear([], x) == []
    with pytest.raises(ValueError, match="row 0 does not fit x, which has 4 numbers"):
        cgrad.linear(rows, x[:4])
    with pytest.raises(ValueError, match="row 1 does not fit x"):
        cgrad.linear([[1.0, 2.0], [3.0]], [0.5, 0.25])
    with pytest.raises(TypeError, match="linear.. inputs must be a list"):
        cgrad.linear(rows, x[0])
