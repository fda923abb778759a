"""Benchmark: build and backward speed wherever the allocator put the nodes.

A graph built once into fresh memory and differentiated again and again is the best
case.  A user's program sees first calls, graphs rebuilt into the memory of the last
step's graph, and heaps fragmented by whatever ran before.  Each cell here is one fresh
process (so "first call" means it) that prepares the heap, builds one graph and runs
its first backward(), timed by thread CPU time and by wall time.

``python -m cgrad bench --layout [--quick] [--json FILE]``.  Uses only the public API, so
the same file measures an older cgrad (or micrograd-compatible engines) as well.
"""
import json
import os
import random
import statistics
import subprocess
import sys
import time

SHAPES = ("wide tree", "deep chain", "unfused MLP")
HEAPS = ("fresh", "recycled", "fragmented")
SIZES = {"quick": (10**3, 10**4, 10**5), "full": (10**3, 10**4, 10**5, 10**6, 10**7)}
REBUILDS = 4            # "recycled": the graph is built, differentiated, freed this often first
PROCESSES = {"quick": 1, "full": 3}   # per cell; 1 at 1e7 nodes (a minute a process)


# ---- graphs: leaves made untimed; (build, finish or None, nodes, ops): build() is timed --------

def wide_tree(Value, n_nodes):
    """Terms a*b + a over fresh leaves, summed by a balanced tree of +: 5 nodes a term.
    The build timed is the terms' (the tree is mostly Python's list work)."""
    rng = random.Random(0)
    leaves = [(Value(rng.uniform(-1, 1)), Value(rng.uniform(-1, 1)))
              for _ in range(max(1, n_nodes // 5))]

    def build():
        return [a * b + a for a, b in leaves]        # the timed part: 2 ops a term

    def finish(terms):
        while len(terms) > 1:
            terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                     for i in range(0, len(terms), 2)]
        return terms[0]
    return build, finish, 5 * len(leaves), 2 * len(leaves)


def deep_chain(Value, n_nodes):
    """y = y * 0.5 + 1.0 repeated: 4 nodes a level (two constants, *, +), no recursion."""
    x = Value(0.5)
    levels = max(1, n_nodes // 4)

    def build():
        y = x
        for _ in range(levels):
            y = y * 0.5 + 1.0
        return y
    return build, None, 4 * levels, 2 * levels


def unfused_mlp(Value, n_nodes):
    """micrograd's MLP(16, [16, 16, 1]) over a batch, one node per op as micrograd
    builds it (sum(w*x) + b, ReLU), with a sum of the outputs as root."""
    sizes = [16, 16, 16, 1]
    rng = random.Random(0)
    layers = [[([Value(rng.uniform(-1, 1)) for _ in range(nin)], Value(0.0))
               for _ in range(nout)] for nin, nout in zip(sizes, sizes[1:])]
    per_example = sum(nout * (2 * nin + 2) for nin, nout in zip(sizes, sizes[1:])) + 1
    batch = max(1, n_nodes // (per_example + sizes[0]))
    rows = [[Value(rng.uniform(-1, 1)) for _ in range(sizes[0])] for _ in range(batch)]

    def build():
        outs = []
        for x in rows:
            for k, layer in enumerate(layers):
                last = k == len(layers) - 1
                x = [sum((wi * xi for wi, xi in zip(w, x)), b) for w, b in layer]
                x = x if last else [v.relu() for v in x]
            outs.append(x[0])
        return sum(outs)
    return build, None, batch * (per_example + sizes[0]), batch * per_example


GRAPHS = {"wide tree": wide_tree, "deep chain": deep_chain, "unfused MLP": unfused_mlp}


# ---- heaps --------------------------------------------------------------------------------

def fragment(Value, n_nodes):
    """Leave the heap as a long-running program does: twice the graph's size in nodes
    made, half of them (chosen at random) freed in random order, the rest kept."""
    rng = random.Random(1)
    a, b = Value(1.0), Value(2.0)
    made = [a * b for _ in range(2 * n_nodes)]
    order = list(range(len(made)))
    rng.shuffle(order)
    kept = [made[i] for i in order[: len(order) // 2]]
    for i in order[len(order) // 2:]:
        made[i] = None
    del made
    return kept


def run_cell(shape, heap, n_nodes):
    """In this process: prepare the heap, build, first backward.  Times in ns per op
    (build) and per node (backward), thread CPU and wall."""
    from cgrad.engine import Value
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    make = GRAPHS[shape]
    kept = fragment(Value, n_nodes) if heap == "fragmented" else None
    build, finish, nodes, ops = make(Value, n_nodes)
    finish = finish or (lambda root: root)
    if heap == "recycled":
        for _ in range(REBUILDS):
            root = finish(build())
            root.backward()
            del root
    cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
    root = build()
    build_cpu, build_wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - wall
    root = finish(root)
    cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
    root.backward()
    back_cpu, back_wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - wall
    del kept
    return {"build_cpu": build_cpu / ops, "build_wall": build_wall / ops,
            "backward_cpu": back_cpu / nodes, "backward_wall": back_wall / nodes,
            "nodes": nodes}


def measure(shape, heap, n_nodes, processes):
    """Median over fresh processes of run_cell."""
    runs = []
    for _ in range(processes):
        out = subprocess.run(
            [sys.executable, "-c", "import json, sys; from cgrad.cli.layout import run_cell; "
             "print(json.dumps(run_cell(*json.loads(sys.argv[1]))))",
             json.dumps([shape, heap, n_nodes])],
            capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED="0"))
        if out.returncode != 0:
            raise RuntimeError(f"{shape}/{heap}/{n_nodes}: {out.stderr[-2000:]}")
        runs.append(json.loads(out.stdout.splitlines()[-1]))
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main(quick=False, json_path=None):
    mode = "quick" if quick else "full"
    sizes, processes = SIZES[mode], PROCESSES[mode]
    results = []
    print(f"backward ns per node / build ns per op, thread CPU (wall); first call, median "
          f"of {processes} process(es) per cell (1 at 1e7 nodes)")
    header = "| graph | heap | " + " | ".join(f"{n:.0e} nodes" for n in sizes) + " |"
    print(header)
    print("|" + "---|" * (2 + len(sizes)))
    for shape in SHAPES:
        for heap in HEAPS:
            cells = []
            for n in sizes:
                r = measure(shape, heap, n, processes if n < 10**7 else 1)
                results.append(dict(r, shape=shape, heap=heap, size=n))
                cells.append(f"{r['backward_cpu']:.1f} ({r['backward_wall']:.1f}) / "
                             f"{r['build_cpu']:.0f} ({r['build_wall']:.0f})")
            print(f"| {shape} | {heap} | " + " | ".join(cells) + " |", flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
    return 0
