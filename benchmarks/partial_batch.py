"""Every batch of an epoch replayed, the last partial one included, through
cgrad.compile: one Graph recorded per batch shape, or (dynamic=True) copied per batch
size from the step traced over two and three examples.  The digits, MLP(64, [32, 10]),
Adam, batches of 32, three epochs; what the first call of each shape costs (recording
or copying) and what later calls cost.

    python benchmarks/partial_batch.py
"""
import random
import statistics
import time

import numpy as np

import cgrad
from cgrad import losses, nn
from cgrad.datasets import load_digits
from cgrad.optim import Adam


def main(epochs=3, batch=32):
    X, y, _, _ = load_digits()
    targets = np.eye(10)[y]
    final = {}
    for dynamic in (False, True):
        random.seed(0)
        model = nn.MLP(64, [32, 10])
        optimizer = Adam(model.parameters(), lr=0.01)
        step = cgrad.compile(lambda xs, ys: losses.softmax_cross_entropy(
            [model(x) for x in xs], ys), dynamic=dynamic, threads=1)
        rng = np.random.default_rng(0)
        times = {}   # batch size -> seconds of each call, in order
        for _ in range(epochs):
            order = rng.permutation(len(y))
            for i in range(0, len(order), batch):
                rows = order[i:i + batch]
                start = time.perf_counter()
                step.step(X[rows], targets[rows], optimizer=optimizer)
                times.setdefault(len(rows), []).append(time.perf_counter() - start)
        final[dynamic] = [p.data for p in model.parameters()]
        print(f"cgrad.compile(dynamic={dynamic}): {len(y)} examples an epoch, "
              f"{len(y) // batch} batches of {batch} and one of {len(y) % batch}; "
              f"{len(step.graphs)} graphs")
        for size, t in sorted(times.items(), reverse=True):
            print(f"  batch of {size}: first call {t[0] * 1e3:.2f} ms, later calls "
                  f"{statistics.median(t[1:]) * 1e3:.3f} ms (median of {len(t) - 1})")
    print("same parameters after training:", final[False] == final[True])


if __name__ == "__main__":
    main()
