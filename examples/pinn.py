"""A physics-informed fit: learn u(x) on [0, 2*pi] knowing only that du/dx = cos(x) and
u(0) = 0.  The loss is made of the network's derivative with respect to its input
(cgrad.grad with create_graph=True), so training differentiates a gradient; the step is
recorded once and replayed.  The answer is sin(x), which the network never sees.

    python examples/pinn.py [steps] [seed]
"""
import math
import random
import sys

import numpy as np

import cgrad
from cgrad import Value, nn
from cgrad.optim import Adam

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
random.seed(int(sys.argv[2]) if len(sys.argv) > 2 else 0)   # nn draws weights with random
model = nn.MLP(1, [16, 16, 1], activation="tanh")

# collocation points: where the equation is enforced
n_points = 32
xs = cgrad.inputs(n_points, 1)           # refilled from X at each step
targets = cgrad.inputs(n_points)         # cos(x) at those points
X = np.linspace(0.0, 2 * math.pi, n_points).reshape(-1, 1)

residuals = []
for x, target in zip(xs, targets):
    u = model(x)
    (du_dx,) = cgrad.grad(u, x, create_graph=True)    # a Value: differentiable again
    residuals.append((du_dx - target) ** 2)
u0 = model([Value(0.0)])
loss = cgrad.sum(residuals) * (1.0 / n_points) + u0 ** 2   # the equation, u(0) = 0

graph = cgrad.Graph(loss, inputs=(xs, targets), input_grads=False)
optimizer = Adam(model.parameters(), lr=0.01)
for k in range(steps):
    optimizer.lr = 0.01 * (1 - 0.95 * k / steps)          # settle at the end
    value = graph.step(X, np.cos(X[:, 0]), optimizer=optimizer)
    if k % (steps // 5 or 1) == 0 or k == steps - 1:
        print(f"step {k:5d}  loss {value:.3e}")

grid = np.linspace(0.0, 2 * math.pi, 101)
u = np.array([model([Value(float(x))]).data for x in grid])
print(f"max |u(x) - sin(x)| on [0, 2 pi]: {np.max(np.abs(u - np.sin(grid))):.4f}")
