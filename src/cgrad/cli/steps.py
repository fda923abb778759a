"""micrograd's demo as the commands, the benchmarks and the tests run it: its data, its
model, and one training step written with cgrad's helpers or exactly as micrograd's
notebook writes it.

MLP(2, [16, 16, 1]) on 100 two-moons points, max-margin loss plus 1e-4 L2, SGD with
lr = 1.0 - 0.9*k/100, 100 steps: the loop of micrograd's demo.ipynb.
"""
import random

import numpy as np

from cgrad import losses, nn, reference
from cgrad.datasets import make_moons
from cgrad.engine import Value


def moons(seed=1337):
    """The demo's data, drawn as micrograd's notebook draws it: labels in {-1, +1}."""
    np.random.seed(seed)
    random.seed(seed)
    X, y = make_moons(n_samples=100, noise=0.1)
    return X, [int(label) for label in y * 2 - 1]


def demo_model(value_type=Value):
    return nn.MLP(2, [16, 16, 1], fused=value_type is Value, value_type=value_type)


def learning_rate(k, steps=100):
    return 1.0 - 0.9 * k / steps


def accuracy(scores, y):
    return sum((yi > 0) == (s.data > 0) for yi, s in zip(y, scores)) / len(y)


def cgrad_step(model, optimizer, X, y, k, steps):
    """One step with cgrad's helpers: fused neurons, losses, the C optimizer."""
    scores = [model(list(row)) for row in X.tolist()]
    loss = losses.hinge(scores, y) + losses.l2(model.parameters(), 1e-4)
    optimizer.zero_grad()
    loss.backward()
    optimizer.lr = learning_rate(k, steps)
    optimizer.step()
    return loss.data, accuracy(scores, y)


def micrograd_step(model, X, y, k, steps, Value=reference.Value):
    """One step exactly as micrograd's demo writes it."""
    inputs = [list(map(Value, xrow)) for xrow in X.tolist()]
    scores = list(map(model, inputs))
    data_loss = sum((1 + -yi * scorei).relu() for yi, scorei in zip(y, scores)) * (1.0 / len(y))
    reg_loss = 1e-4 * sum((p * p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    model.zero_grad()
    total_loss.backward()
    lr = learning_rate(k, steps)
    for p in model.parameters():
        p.data -= lr * p.grad
    return total_loss.data, accuracy(scores, y)
