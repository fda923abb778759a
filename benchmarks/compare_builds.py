"""Two builds of cgrad, interleaved: one process per measurement, the builds alternating
(each first in turn), the median over rounds.

    python benchmarks/compare_builds.py OLD_SRC NEW_SRC [ROUNDS]

Two tables: the main table's cgrad rows (ns per op or node), and an eager training
loop's graph cycle (build, backward(), free) for each shape of `python -m cgrad bench
--layout` at 200,000 nodes: the graph is built, differentiated and freed six times, and
the figures are the best of the last five, in ns per node of thread CPU time, for the
free alone and for the whole cycle.

OLD_SRC and NEW_SRC are `src` directories with the extension built in place
(`python setup.py build_ext --inplace` in a checkout of each commit)."""
import json
import os
import statistics
import subprocess
import sys

MAIN_ROWS = ("import json, sys; from cgrad.cli import benchmarking as b; "
             "w = [x for x in b.WORKLOADS if x.key == sys.argv[1]][0]; "
             "print(json.dumps([b.measure(w, 'cgrad', 'full')['median'] * 1e9]))")
KEYS = ["build", "backward-wide", "backward-chain", "demo-step"]  # `bench --only` keys

CYCLE = r"""
import json, sys, time
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
print(json.dumps([min(free[1:]), min(cycle[1:])]))
"""
SHAPES = ["wide tree", "deep chain", "unfused MLP"]


def interleaved(code, arg, trees, rounds):
    """{tree: the median of each figure code prints} over rounds, one process each."""
    runs = {tree: [] for tree in trees}
    for r in range(rounds):
        for tree in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True,
                                 text=True, check=True,
                                 env=dict(os.environ, PYTHONPATH=trees[tree]))
            runs[tree].append(json.loads(out.stdout.splitlines()[-1]))
    return {tree: [statistics.median(figure) for figure in zip(*runs[tree])]
            for tree in trees}


def main(old, new, rounds=3):
    trees = {"before": old, "after": new}
    print("| workload | before (ns) | after (ns) | after / before |")
    print("|---|---|---|---|")
    for key in KEYS:
        m = interleaved(MAIN_ROWS, key, trees, rounds)
        before, after = m["before"][0], m["after"][0]
        print(f"| {key} | {before:.1f} | {after:.1f} | {after / before:.2f}x |", flush=True)
    print("\n| graph | free, before | free, after | cycle, before | cycle, after |")
    print("|---|---|---|---|---|")
    for shape in SHAPES:
        m = interleaved(CYCLE, shape, trees, rounds)
        print(f"| {shape} | {m['before'][0]:.1f} | {m['after'][0]:.1f} | "
              f"{m['before'][1]:.1f} | {m['after'][1]:.1f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:4]))
