"""`python -m cgrad bench --parallel`: independent training loops in threads.

Two models, each with its own replayed Graph (threads=1, so that each loop uses one
core), trained for the same steps: first one loop after the other in one thread, then
both at once in two threads.  Graphs that share no node run side by side (their C work
releases the GIL and the run lock); the figure is the throughput of the two threads
over the serial run's, wall clock, median of rounds.
"""
import random
import statistics
import threading
import time

import numpy as np


SHAPES = {"quick": (64, [128, 10], 32, 20), "full": (784, [128, 10], 128, 60)}


def loop(nin, nouts, batch, steps, seed):
    import cgrad
    from cgrad import losses, nn
    from cgrad.optim import Adam
    random.seed(seed)
    model = nn.MLP(nin, nouts)
    xs, ys = cgrad.inputs(batch, nin), cgrad.inputs(batch, nouts[-1])
    graph = cgrad.Graph(losses.softmax_cross_entropy([model(x) for x in xs], ys),
                        inputs=(xs, ys), input_grads=False, threads=1)
    opt = Adam(model.parameters(), lr=1e-3)
    rng = np.random.RandomState(seed)
    data = [(rng.uniform(0, 1, (batch, nin)), np.eye(nouts[-1])[rng.randint(0, nouts[-1], batch)])
            for _ in range(8)]

    def run():
        for k in range(steps):
            graph.step(*data[k % len(data)], optimizer=opt)
    run()            # warm
    return run


def measure(mode="full", rounds=5):
    nin, nouts, batch, steps = SHAPES[mode]
    runs = [loop(nin, nouts, batch, steps, seed) for seed in (0, 1)]
    serial, parallel = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for run in runs:
            run()
        serial.append(time.perf_counter() - t)
        threads = [threading.Thread(target=run) for run in runs]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        parallel.append(time.perf_counter() - t)
    s, p = statistics.median(serial), statistics.median(parallel)
    return {"workload": f"2 x MLP({nin}, {nouts}) b{batch}, Adam, {steps} steps each",
            "serial_s": s, "threads_s": p, "speedup": s / p, "rounds": rounds}


def table(r):
    return (f"| workload | one loop after the other | two threads | throughput gain |\n"
            f"|---|---|---|---|\n"
            f"| {r['workload']} | {r['serial_s'] * 1e3:.1f} ms | {r['threads_s'] * 1e3:.1f} ms "
            f"| {r['speedup']:.2f}x |\n\nMedian of {r['rounds']} rounds, wall clock; "
            f"each Graph with threads=1.")
