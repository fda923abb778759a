"""Every op against PyTorch float64 (skipped when torch is not installed)."""
import math

import pytest

from cgrad import Value
from test_ops import OPS

torch = pytest.importorskip("torch")

TORCH_SPELLING = {  # cgrad method -> torch function, where the names differ
    'relu': torch.relu, 'tanh': torch.tanh, 'exp': torch.exp, 'log': torch.log,
    'sigmoid': torch.sigmoid,
}


class Tensorish:
    """Wraps a torch scalar so the OPS lambdas written against Value run on torch."""

    def __init__(self, t):
        self.t = t

    def _wrap(self, other):
        return other.t if isinstance(other, Tensorish) else other

    def __add__(self, o): return Tensorish(self.t + self._wrap(o))
    def __radd__(self, o): return Tensorish(self._wrap(o) + self.t)
    def __mul__(self, o): return Tensorish(self.t * self._wrap(o))
    def __rmul__(self, o): return Tensorish(self._wrap(o) * self.t)
    def __sub__(self, o): return Tensorish(self.t - self._wrap(o))
    def __rsub__(self, o): return Tensorish(self._wrap(o) - self.t)
    def __truediv__(self, o): return Tensorish(self.t / self._wrap(o))
    def __rtruediv__(self, o): return Tensorish(self._wrap(o) / self.t)
    def __pow__(self, o): return Tensorish(self.t ** self._wrap(o))
    def __rpow__(self, o): return Tensorish(self._wrap(o) ** self.t)
    def __neg__(self): return Tensorish(-self.t)

    def __getattr__(self, name):
        return lambda: Tensorish(TORCH_SPELLING[name](self.t))


@pytest.mark.parametrize("name", OPS)
def test_op_matches_torch_float64(name):
    f, inputs = OPS[name]
    xs = [Value(x) for x in inputs]
    out = f(*xs)
    out.backward()
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in inputs]
    t_out = f(*[Tensorish(t) for t in ts]).t
    t_out.backward()
    assert math.isclose(out.data, t_out.item(), rel_tol=1e-14, abs_tol=1e-15)
    for x, t in zip(xs, ts):
        assert math.isclose(x.grad, t.grad.item(), rel_tol=1e-13, abs_tol=1e-15)


def test_seed_neuron_matches_the_seeds_torch_numbers():
    """The seeds' PyTorch run built b with torch.Tensor([...]): float32, then .double()."""
    b32 = torch.Tensor([6.8813735870195432]).double().item()
    x1, x2 = Value(2.0), Value(0.0)
    w1, w2 = Value(-3.0), Value(1.0)
    b = Value(b32)
    o = (x1 * w1 + x2 * w2 + b).tanh()
    o.backward()
    # printed by the seed notebooks
    assert math.isclose(o.data, 0.7071066904050358, rel_tol=1e-15)
    assert math.isclose(x2.grad, 0.5000001283844369, rel_tol=1e-15)
    assert w2.grad == 0.0
    assert math.isclose(x1.grad, -1.5000003851533106, rel_tol=1e-15)
    assert math.isclose(w1.grad, 1.0000002567688737, rel_tol=1e-15)
