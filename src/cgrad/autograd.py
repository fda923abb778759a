"""Gradients as Values: differentiate a gradient again.

``grad(outputs, inputs, create_graph=True)`` applies the chain rule the way backward()
does, node by node in the same order, but records every step as graph nodes built from
cgrad's ops.  The gradients are then Values like any other: they can enter a loss (a
gradient penalty, a physics residual), be differentiated again, any number of times, and
be recorded and replayed by :class:`cgrad.Graph`.

Each op's derivative is written in ops that are themselves differentiable, with the
very arithmetic of the C backward (so the numbers are those backward() gives): ReLU's is
``heaviside(out)`` (whose own derivative is 0, also at the kink, as in PyTorch), log's
``reciprocal(a)``, tanh's ``1 - out**2``, and so on.

Without ``create_graph`` nothing is recorded: ``grad`` runs backward()'s own sweep over
the graph and returns its numbers, every node's ``.grad`` left as it was.
"""
import numbers
import sys
from typing import Any, Iterable, Sequence, Union

from cgrad._autograd import _gradients
from cgrad._core import Value, _gradient_numbers, _track_graph

Values = Union[Value, Iterable[Value]]


def _as_list(values: Any, what: str) -> tuple[list[Value], bool]:
    if isinstance(values, Value):
        return [values], True
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"{what} must be a Value or a list of Values, "
                        f"got {type(values).__name__}") from None
    for v in values:
        if not isinstance(v, Value):
            raise TypeError(f"{what} must be Values, got {type(v).__name__}")
    return values, False


def _weights(grad_outputs: Any, n_outputs: int) -> list[Any]:
    """grad_outputs as a list of one Value or real number per output."""
    if grad_outputs is None:
        return [1.0] * n_outputs
    np = sys.modules.get("numpy")       # an array can only come from a loaded numpy
    if np is not None and isinstance(grad_outputs, np.ndarray):
        weights = np.ravel(grad_outputs).tolist()
    elif isinstance(grad_outputs, (Value, numbers.Real, str, bytes)):
        weights = [grad_outputs]
    else:
        try:
            weights = list(grad_outputs)
        except TypeError:
            weights = [grad_outputs]
    for w in weights:
        if not isinstance(w, (Value, numbers.Real)):
            raise TypeError(f"grad_outputs must be real numbers or Values, one per output; "
                            f"got {type(w).__name__}")
    if len(weights) != n_outputs:
        raise ValueError(f"{n_outputs} outputs but {len(weights)} grad_outputs")
    return weights


def grad(outputs: Values, inputs: Values, grad_outputs: Any = None,
         create_graph: bool = False) -> Any:
    """d(outputs)/d(inputs), as PyTorch's ``torch.autograd.grad``.

    ``outputs`` is a Value or a list of them (their gradients add up, each weighted by
    ``grad_outputs``, 1.0 by default); ``inputs`` a Value or a list of Values (leaves or
    not).  Returns one gradient per input, in the same shape: Values when
    ``create_graph`` (differentiable again), else floats, computed by backward()'s own
    sweep (a node with a Python ``_backward`` runs it).  An input the outputs do not
    depend on gets 0.  Every ``.grad`` is left as it was."""
    outputs, _ = _as_list(outputs, "outputs")
    inputs, single = _as_list(inputs, "inputs")
    grad_outputs = _weights(grad_outputs, len(outputs))
    if not create_graph:     # numbers only: backward()'s own sweep, no graph built
        weights = [g.data if isinstance(g, Value) else float(g) for g in grad_outputs]
        result: list[Any] = _gradient_numbers(outputs, weights, inputs)
        return result[0] if single else result
    seeds = [g if isinstance(g, Value) else Value(float(g)) for g in grad_outputs]
    result = [Value(0.0) if g is None else g for g in _gradients(outputs, seeds, inputs)]
    return result[0] if single else result


def backward(root: Value) -> None:
    """``root.backward(create_graph=True)``: what backward() does (every node's ``.grad``
    set, leaves' accumulated), and each leaf's gradient also kept as a Value in its
    ``grad_value`` attribute (added to the one already there), differentiable again.

    A leaf's ``grad_value`` is a graph that leads back to the leaf (a reference cycle,
    as in PyTorch): setting the leaf's ``grad`` (``zero_grad()``, ``p.grad = 0``) drops
    it, and the cycle's nodes are handed to Python's cyclic GC so that a model dropped
    with its gradients still holding it is freed."""
    for node, g in _gradients([root], [Value(1.0)], None):
        interior = bool(node._prev)
        if interior or node is root:
            node.grad = g.data
        else:
            old = getattr(node, "grad_value", None)
            node.grad += g.data          # drops grad_value (the grad setter does)
            g = g if old is None else old + g
            _track_graph(g)
            setattr(node, "grad_value", g)


def hessian(f: Value, inputs: Values) -> list[list[float]]:
    """The matrix of second derivatives of the scalar Value ``f`` with respect to
    ``inputs`` (a list of Values), as a list of rows of floats.  For small problems:
    one gradient graph, then one pass per input."""
    inputs, _ = _as_list(inputs, "inputs")
    first = grad(f, inputs, create_graph=True)
    return [grad(g, inputs) for g in first]


def hvp(f: Value, inputs: Values, vector: Sequence[float]) -> list[float]:
    """The Hessian of ``f`` times ``vector`` without forming the Hessian: the gradient
    of (grad f . vector), two passes whatever the number of inputs."""
    inputs, _ = _as_list(inputs, "inputs")
    vector = list(vector)
    if len(vector) != len(inputs):
        raise ValueError(f"{len(inputs)} inputs but a vector of {len(vector)}")
    first = grad(f, inputs, create_graph=True)
    dot = first[0] * vector[0]
    for g, v in zip(first[1:], vector[1:]):
        dot = dot + g * v
    return list(grad(dot, inputs))
