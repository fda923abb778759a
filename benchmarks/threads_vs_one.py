"""Replay's training steps with threads=1 and threads=2, alternated: the `bench --scale`
workloads, input_grads=False, median wall ms (15 rounds for batches of 128 or more, 200
for smaller).  Run it beside a busy loop (`python -c "while True: pass" &`) to see a
step under contention; PYTHONPATH=OLD/src compares another build.

    python benchmarks/threads_vs_one.py [WORK_PER_PART]
"""
import random
import statistics
import sys
import time

from cgrad import nn
from cgrad._replay import _set_work_per_part
from cgrad.cli import scale


def main(work=3 << 19):
    _set_work_per_part(work)
    for name, nin, nouts, batch, loss_kind, opt_kind in scale.WORKLOADS:
        X, y = scale.workload_data(nin, batch, loss_kind)
        steps = {}
        for threads in (1, 2):
            random.seed(0)
            model = nn.MLP(nin, nouts)
            steps[threads] = scale.cgrad_step(nin, nouts, batch, loss_kind, opt_kind, X, y,
                                              model, input_grads=False, threads=threads)
        times = {1: [], 2: []}
        for r in range(15 if batch >= 128 else 200):
            for threads in ((1, 2) if r % 2 else (2, 1)):
                start = time.perf_counter()
                steps[threads]()
                times[threads].append(time.perf_counter() - start)
        one, two = (statistics.median(times[t]) * 1e3 for t in (1, 2))
        print(f"{name}: 1 thread {one:.3f} ms, 2 threads {two:.3f} ms ({one / two:.2f}x)")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
