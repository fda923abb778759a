"""What Python pays to look at a replayed Graph's nodes after a step: one node's numbers
(the loss, a parameter, an input leaf's grad, whose input-gradient pass runs then), every
parameter one by one, and an eager op (which brings every node up to date).
MLP(784, [256, 128, 10]), Adam, one thread; median ms of 8 steps each.

    python benchmarks/read_after_step.py [batch]      (default 512)
"""
import random
import statistics
import sys
import time

import numpy as np

import cgrad
from cgrad import losses, nn
from cgrad.optim import Adam


def main(batch=512):
    random.seed(0)
    model = nn.MLP(784, [256, 128, 10])
    xs, ys = cgrad.inputs(batch, 784), cgrad.inputs(batch, 10)
    loss = losses.softmax_cross_entropy([model(x) for x in xs], ys)
    graph = cgrad.Graph(loss, inputs=(xs, ys), threads=1)
    optimizer = Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    X, T = rng.uniform(0, 1, (batch, 784)), np.eye(10)[rng.integers(0, 10, batch)]
    param = model.parameters()[5]

    def ms(read, steps=8):
        times = []
        for _ in range(steps):
            graph.step(X, T, optimizer=optimizer)
            start = time.perf_counter()
            read()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)

    print(f"MLP(784, [256, 128, 10]) b{batch}, ms after a step ({cgrad.__file__})")
    print(f"  nothing (the timer)      {ms(lambda: None):8.3f}")
    print(f"  loss.data                {ms(lambda: loss.data):8.3f}")
    print(f"  a parameter's .data      {ms(lambda: param.data):8.3f}")
    print(f"  an input leaf's .grad    {ms(lambda: xs[0][0].grad):8.3f}")
    print(f"  every parameter's .data  {ms(lambda: [p.data for p in model.parameters()], 3):8.3f}")
    print(f"  an eager op (param * 2)  {ms(lambda: param * 2):8.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 512)
