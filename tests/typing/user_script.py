"""A typed user script over cgrad's public API: mypy --strict must know every type."""
import numpy as np

import cgrad
from cgrad import losses, nn
from cgrad.engine import Value
from cgrad.optim import SGD, Adam


def train() -> float:
    a: Value = Value(2.0)
    b = a * 3 + 1.5 - a / 2
    c: Value = (b ** 2).relu().tanh().exp().log().sigmoid()
    c.backward()
    grad: float = a.grad
    model = nn.MLP(3, [4, 2])
    params: list[Value] = model.parameters()
    opt = Adam(params, lr=0.01)
    sgd = SGD(params, lr=0.1, momentum=0.9)
    xs = cgrad.inputs(2, 3)
    ys = cgrad.inputs(2, 2)
    loss: Value = losses.softmax_cross_entropy([model(x) for x in xs], ys)
    graph = cgrad.Graph(loss, inputs=(xs, ys), input_grads=False)
    value: float = graph.step(np.zeros((2, 3)), np.eye(2), optimizer=opt)
    sgd.zero_grad()
    total: Value = cgrad.sum([cgrad.dot([a], [b], 1.0), cgrad.logsumexp([a, b])])
    slope: Value = cgrad.grad(total * a.heaviside() * b.reciprocal(), a, create_graph=True)
    curvature: list[list[float]] = cgrad.hessian(total, [a, b])
    hvp: list[float] = cgrad.hvp(total, [a, b], [1.0, 0.0])
    total.backward(create_graph=True)
    return value + grad + total.data + losses.mse([a], [1.0]).data + slope.data \
        + curvature[0][0] + hvp[0]
