"""cgrad.grad's two ways against backward() on one graph: an MLP(16, [32, 32, 1])
squared-error loss over 32 examples, the gradient with respect to its 1,633
parameters.  Interleaved rounds, median ms (thread CPU beside wall).

    python benchmarks/grad_numbers.py
"""
import random
import statistics
import time

import cgrad
from cgrad import Value, nn


def main(rounds=15):
    random.seed(0)
    model = nn.MLP(16, [32, 32, 1])
    xs = [[Value(random.uniform(-1, 1)) for _ in range(16)] for _ in range(32)]
    loss = cgrad.sum([(model(x) - 1.0) ** 2 for x in xs])
    params = model.parameters()
    ways = {
        "backward()": loss.backward,
        "grad(loss, params)": lambda: cgrad.grad(loss, params),
        "grad(..., create_graph=True)": lambda: cgrad.grad(loss, params, create_graph=True),
    }
    wall = {name: [] for name in ways}
    cpu = {name: [] for name in ways}
    for _ in range(rounds):
        for name, run in ways.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            run()
            cpu[name].append(time.thread_time() - c0)
            wall[name].append(time.perf_counter() - t0)
    print(f"{'':32} {'wall ms':>9} {'CPU ms':>9}")
    for name in ways:
        print(f"{name:32} {statistics.median(wall[name]) * 1e3:9.3f} "
              f"{statistics.median(cpu[name]) * 1e3:9.3f}")


if __name__ == "__main__":
    main()
