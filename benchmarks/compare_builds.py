"""Two builds of cgrad on the main table's cgrad rows, interleaved: one process per
measurement, the builds alternating, the median over rounds.

    python benchmarks/compare_builds.py OLD_SRC NEW_SRC [ROUNDS]

OLD_SRC and NEW_SRC are `src` directories with the extension built in place
(`python setup.py build_ext --inplace` in a checkout of each commit)."""
import json
import os
import statistics
import subprocess
import sys

CODE = ("import json, sys; from cgrad.cli import benchmarking as b; "
        "w = [x for x in b.WORKLOADS if x.name == sys.argv[1]][0]; "
        "print(json.dumps(b.measure(w, 'cgrad', 'full')['median']))")
NAMES = ["build ops (c = a*b + a, kept)", "backward, wide graph", "backward, 900-deep chain"]


def main(old, new, rounds=3):
    trees = {"before": old, "after": new}
    times = {(n, t): [] for n in NAMES for t in trees}
    for _ in range(rounds):
        for name in NAMES:
            for tree, path in trees.items():
                out = subprocess.run([sys.executable, "-c", CODE, name], capture_output=True,
                                     text=True, check=True,
                                     env=dict(os.environ, PYTHONPATH=path))
                times[(name, tree)].append(json.loads(out.stdout.splitlines()[-1]) * 1e9)
    print("| workload | before (ns) | after (ns) | after / before |")
    print("|---|---|---|---|")
    for name in NAMES:
        before, after = (statistics.median(times[(name, t)]) for t in trees)
        print(f"| {name} | {before:.1f} | {after:.1f} | {after / before:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:4]))
