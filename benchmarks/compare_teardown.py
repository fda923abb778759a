"""Two builds of cgrad on an eager training loop's graph cycle: build, backward(), free.

    python benchmarks/compare_teardown.py OLD_SRC NEW_SRC [ROUNDS]

For each shape of `python -m cgrad bench --layout` (200,000 nodes), one process per
measurement, the builds alternating: the graph is built, differentiated and freed six
times; the figures are the best of the last five, in ns per node of thread CPU time,
for the free alone and for the whole cycle, then the median over rounds."""
import os
import statistics
import subprocess
import sys

CODE = r"""
import sys, time
from cgrad.cli import layout
from cgrad.engine import Value
build, finish, nodes, ops = layout.GRAPHS[sys.argv[1]](Value, 200_000)
finish = finish or (lambda root: root)
free, cycle = [], []
for _ in range(6):
    start = time.thread_time_ns()
    root = finish(build())
    root.backward()
    freeing = time.thread_time_ns()
    del root
    end = time.thread_time_ns()
    free.append((end - freeing) / nodes)
    cycle.append((end - start) / nodes)
print(min(free[1:]), min(cycle[1:]))
"""


def main(old, new, rounds=5):
    trees = {"before": old, "after": new}
    print("| graph | free, before | free, after | cycle, before | cycle, after |")
    print("|---|---|---|---|---|")
    for shape in ("wide tree", "deep chain", "unfused MLP"):
        runs = {tree: [] for tree in trees}
        for r in range(rounds):
            for tree in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
                out = subprocess.run([sys.executable, "-c", CODE, shape], capture_output=True,
                                     text=True, check=True,
                                     env=dict(os.environ, PYTHONPATH=trees[tree]))
                runs[tree].append([float(x) for x in out.stdout.split()])
        free = {t: statistics.median(x[0] for x in runs[t]) for t in trees}
        cycle = {t: statistics.median(x[1] for x in runs[t]) for t in trees}
        print(f"| {shape} | {free['before']:.1f} | {free['after']:.1f} | "
              f"{cycle['before']:.1f} | {cycle['after']:.1f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
