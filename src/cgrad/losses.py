"""Losses built from engine ops, so backward() differentiates them.  Each returns a Value.

Targets may be numbers, or Values (leaves from ``cgrad.inputs``) so that a recorded
``cgrad.Graph`` can be replayed over new labels."""
from __future__ import annotations

from typing import Any, Iterable

from cgrad._core import dot, logsumexp, vsum
from cgrad.engine import Value


def _pairs(predictions, targets):
    predictions, targets = list(predictions), list(targets)
    if len(predictions) != len(targets):
        raise ValueError(f"got {len(predictions)} predictions but {len(targets)} targets")
    if not predictions:
        raise ValueError("a loss needs at least one prediction")
    return predictions, targets


def mse(predictions: Iterable[Any], targets: Iterable[Any]) -> Value:
    """Mean squared error: mean((p - t)**2)."""
    predictions, targets = _pairs(predictions, targets)
    return vsum([(p - t) ** 2 for p, t in zip(predictions, targets)]) * (1.0 / len(targets))


def hinge(scores: Iterable[Any], labels: Iterable[Any]) -> Value:
    """micrograd's max-margin loss: mean(relu(1 - y * score)), labels in {-1, +1}."""
    scores, labels = _pairs(scores, labels)
    for y in labels:
        if not isinstance(y, Value) and y not in (-1, 1):
            raise ValueError(f"hinge loss needs labels -1 or +1, got {y!r}")
    losses = [(1 + -y * s).relu() for y, s in zip(labels, scores)]
    return vsum(losses) * (1.0 / len(losses))


def l2(parameters: Iterable[Value], alpha: float) -> Value:
    """alpha * sum(p*p): micrograd's demo regularizer, as one dot of the parameters with
    themselves: the numbers of summing the squares (each square rounded, then added in
    order; each parameter's two p * g in the same place of its gradient's sum), with
    one node where the squares took one per parameter."""
    parameters = list(parameters)
    return alpha * dot(parameters, parameters)


def binary_cross_entropy_with_logits(logits: Iterable[Any], labels: Iterable[Any]) -> Value:
    """mean(log(1 + exp(z)) - y*z) for labels in {0, 1}.

    Each term is logsumexp([-y*z, (1-y)*z]), the same number without overflow or
    rounding away small losses (log1p inside), and with gradient sigmoid(z) - y
    everywhere, z = 0 included."""
    logits, labels = _pairs(logits, labels)
    terms = []
    for z, y in zip(logits, labels):
        if not isinstance(y, Value) and y not in (0, 1):
            raise ValueError(f"binary cross-entropy needs labels 0 or 1, got {y!r}")
        z = z if isinstance(z, Value) else Value(z)
        if isinstance(y, Value):
            terms.append(logsumexp([-y * z, (1 - y) * z]))
        else:  # a fixed label: the zero term is a constant (and 0 * inf is no NaN)
            terms.append(logsumexp([-z, 0.0] if y == 1 else [0.0, z]))
    return vsum(terms) * (1.0 / len(terms))


def cross_entropy(logits: Iterable[Any], target: Any) -> Value:
    """Softmax cross-entropy of one example: logsumexp(logits) - logits[target].

    target is a class index, or a row of class probabilities (a one-hot row: a list,
    tuple or numpy array of numbers or Values), giving logsumexp(logits) -
    dot(target, logits).  Computed as logsumexp(logits - logits[target]) so that large
    logits lose no precision."""
    logits = list(logits)
    if hasattr(target, 'ndim') and getattr(target, 'ndim') == 1:
        target = list(target)   # a numpy row
    if isinstance(target, (list, tuple)):
        if len(target) != len(logits):
            raise ValueError(f"the target row has {len(target)} entries "
                             f"for {len(logits)} logits")
        minus_picked = -dot(target, logits)
        return logsumexp([z + minus_picked for z in logits])
    if isinstance(target, Value):
        raise TypeError("target is a Value: a class index must be a number, since it picks "
                        "which logit the loss reads.  For labels that change (a recorded "
                        "Graph's inputs), use one-hot rows: cgrad.inputs(batch, classes) "
                        "as targets, fed np.eye(classes)[labels]")
    if not isinstance(target, int) and not hasattr(target, '__index__'):
        raise TypeError(f"target must be a class index or a row of class probabilities, "
                        f"got {type(target).__name__}")
    target = int(target)
    if not 0 <= target < len(logits):
        raise ValueError(f"target class {target} is out of range for {len(logits)} logits")
    picked = logits[target]
    if isinstance(picked, Value) and picked.data == float("-inf"):
        # logits - (-inf) would be a row of +inf, whose gradient is not the softmax:
        # the textbook form gives PyTorch's (softmax - one_hot) and the loss, inf
        return logsumexp(logits) - picked
    minus_picked = -picked
    return logsumexp([0.0 if i == target else z + minus_picked
                      for i, z in enumerate(logits)])


def softmax_cross_entropy(batch_logits: Iterable[Any], targets: Iterable[Any]) -> Value:
    """Mean softmax cross-entropy over a batch: a list of logit rows and, per row, a
    class index or a row of class probabilities."""
    batch_logits, targets = _pairs(batch_logits, targets)
    return vsum([cross_entropy(z, t) for z, t in zip(batch_logits, targets)]) \
        * (1.0 / len(targets))
