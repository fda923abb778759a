"""One replayed training step on each vector path this CPU runs, interleaved: the
784-wide `bench --scale` workloads, exact kernels (portable is left out: it is 2.5x
slower and only runs where AVX2 is missing), and exact=False, median thread CPU time
of 15 rounds, ms.

    python benchmarks/compare_paths.py
"""
import random
import statistics
import time

from cgrad import nn
from cgrad._replay import _limit_vectors, kernel_path
from cgrad.cli import scale

PATHS = [("avx2", True), ("avx512", True), ("avx512", False)]


def main(rounds=15):
    names = []
    for widest, exact in PATHS:
        _limit_vectors(widest)
        names.append(kernel_path(exact))
    _limit_vectors("avx512")
    print("| workload | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for name, nin, nouts, batch, loss_kind, opt_kind in scale.WORKLOADS[3:]:
        X, y = scale.workload_data(nin, batch, loss_kind)
        steps = []
        for widest, exact in PATHS:
            random.seed(0)
            model = nn.MLP(nin, nouts)
            steps.append(scale.cgrad_step(nin, nouts, batch, loss_kind, opt_kind, X, y,
                                          model, input_grads=False, exact=exact))
        times = [[] for _ in PATHS]
        for r in range(rounds):
            for i in (range(len(PATHS)) if r % 2 else reversed(range(len(PATHS)))):
                _limit_vectors(PATHS[i][0])
                start = time.thread_time()
                steps[i]()
                times[i].append(time.thread_time() - start)
        _limit_vectors("avx512")
        print(f"| {name} | " + " | ".join(f"{1e3 * statistics.median(t):.2f}" for t in times)
              + " |")


if __name__ == "__main__":
    main()
