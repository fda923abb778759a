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
"""
from typing import Any, Iterable, Sequence, Union

from cgrad._core import Value, _structure

Values = Union[Value, Iterable[Value]]


def _as_list(values: Any, what: str) -> tuple[list[Value], bool]:
    if isinstance(values, Value):
        return [values], True
    values = list(values)
    for v in values:
        if not isinstance(v, Value):
            raise TypeError(f"{what} must be Values, got {type(v).__name__}")
    return values, False


def _topological(roots: list[Value]) -> list[tuple[Value, Any]]:
    """Interior nodes the roots depend on, kids before parents, in the order backward()
    sweeps them (a depth-first post-order over kids in their stored order, as the C
    search does), each with its structure; iterative, so any depth works."""
    order: list[tuple[Value, Any]] = []
    seen: set[int] = set()
    for root in roots:
        parts = _structure(root)
        if id(root) in seen or not parts[1]:
            continue
        seen.add(id(root))
        stack = [(root, parts, iter(parts[1]))]
        while stack:
            node, parts, kids = stack[-1]
            for kid in kids:
                if id(kid) not in seen:
                    kid_parts = _structure(kid)
                    if kid_parts[1]:
                        seen.add(id(kid))
                        stack.append((kid, kid_parts, iter(kid_parts[1])))
                        break
            else:
                stack.pop()
                order.append((node, parts))
    return order


def _contributions(node: Value, parts: Any, g: Value) -> list[tuple[Value, Value]]:
    """(kid, d(out)/d(kid) * g) pairs for one node, in the order the C backward adds
    them, as Values built from cgrad's ops."""
    op, kids, arg = parts
    if op == "+" or op == "sum":
        return [(k, g) for k in kids]
    if op == "*":
        a, b = kids
        return [(a, b * g), (b, a * g)]
    if op == "dot":
        weights, inputs, bias = arg
        out = []
        for w, x in zip(weights, inputs):
            out.append((w, x * g))
            out.append((x, w * g))
        if bias is not None:
            out.append((bias, g))
        return out
    if op == "logsumexp":
        return [(k, (k - node).exp() * g) for k in kids]
    if op == "row" or op == "step":
        return []
    if op == "python":
        raise TypeError(f"cannot record the derivative of a node with a Python _backward "
                        f"(op {node._op!r}): its chain rule is Python code, not cgrad ops")
    if op == "opaque":
        return []      # a hand-built node without a chain rule passes nothing, as in micrograd
    (a,) = kids[:1]
    if op == "**k":
        return [(a, (arg * a ** (arg - 1.0)) * g)]
    if op == "**":
        base, exponent = kids
        da = (exponent * base ** (exponent - 1.0)) * g
        db = (node * base.log()) * g if base.data != 0.0 else None
        return [(base, da)] + ([(exponent, db)] if db is not None else [])
    if op == "relu":
        return [(a, node.heaviside() * g)]
    if op == "tanh":
        return [(a, (1 - node ** 2) * g)]
    if op == "exp":
        return [(a, node * g)]
    if op == "log":
        return [(a, a.reciprocal() * g)]
    if op == "sigmoid":
        return [(a, (node * (1 - node)) * g)]
    if op == "recip":
        return [(a, -(node * node) * g)]
    raise NotImplementedError(f"no derivative rule for op {op!r}")


def grad(outputs: Values, inputs: Values, grad_outputs: Any = None,
         create_graph: bool = False) -> Any:
    """d(outputs)/d(inputs), as PyTorch's ``torch.autograd.grad``.

    ``outputs`` is a Value or a list of them (their gradients add up, each weighted by
    ``grad_outputs``, 1.0 by default); ``inputs`` a Value or a list of Values (leaves or
    not).  Returns one gradient per input, in the same shape: Values when
    ``create_graph`` (differentiable again), else floats.  An input the outputs do not
    depend on gets 0.  No ``.grad`` is touched."""
    outputs, _ = _as_list(outputs, "outputs")
    inputs, single = _as_list(inputs, "inputs")
    if grad_outputs is None:
        grad_outputs = [1.0] * len(outputs)
    elif isinstance(grad_outputs, (Value, int, float)):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    grads: dict[int, Value] = {}     # id(node) -> its gradient (a Value)
    keep: dict[int, Value] = {}      # id -> node, so that ids stay unique while we work
    for out, g in zip(outputs, grad_outputs):
        g = g if isinstance(g, Value) else Value(float(g))
        key = id(out)
        keep[key] = out
        grads[key] = grads[key] + g if key in grads else g
    for node, parts in reversed(_topological(outputs)):
        g = grads.get(id(node))
        if g is None:
            continue
        for kid, contribution in _contributions(node, parts, g):
            key = id(kid)
            keep[key] = kid
            grads[key] = grads[key] + contribution if key in grads else contribution
    result: list[Any] = []
    for v in inputs:
        g = grads.get(id(v))
        if g is None:
            g = Value(0.0)
        result.append(g if create_graph else g.data)
    return result[0] if single else result


def backward(root: Value) -> None:
    """``root.backward(create_graph=True)``: what backward() does (every node's ``.grad``
    set, leaves' accumulated), and each leaf's gradient also kept as a Value in its
    ``grad_value`` attribute (added to the one already there), differentiable again."""
    order = _topological([root])
    leaves: list[Value] = []
    seen: set[int] = set()
    for node, (op, kids, arg) in order:
        for kid in kids:
            if id(kid) not in seen and not _structure(kid)[1]:
                seen.add(id(kid))
                leaves.append(kid)
    interior = [node for node, _ in order]
    if not interior:
        leaves = [root]
    grads = grad(root, interior + leaves, create_graph=True)
    for node, g in zip(interior, grads):
        node.grad = g.data
    for leaf, g in zip(leaves, grads[len(interior):]):
        leaf.grad += g.data
        old = getattr(leaf, "grad_value", None)
        setattr(leaf, "grad_value", g if old is None else old + g)


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
