"""Replay at scale: one training step (forward, backward, optimizer) of MLPs from the
micrograd demo up to MNIST-sized, on cgrad replay, PyTorch float64 (one thread and its
default) and JAX jit float64 (when installed), from the same weights and data.

Engines are interleaved within each round, in a new order each round; each engine's
timed step follows an untimed step of its own (a training loop's steady state), timed
by wall clock and by the calling thread's CPU time.  Setup (building and recording, or
jit compiling) and peak memory growth are measured in fresh processes per engine and
workload (the median of three).

    python -m cgrad bench --scale [--quick] [--json FILE]
"""
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

# (name, nin, nouts, batch, loss, optimizer)
WORKLOADS = [
    ("demo MLP(2, [16, 16, 1]), 100 moons, SGD", 2, [16, 16, 1], 100, "hinge", "sgd"),
    ("MLP(2, [64, 64, 1]), 100 moons, SGD", 2, [64, 64, 1], 100, "hinge", "sgd"),
    ("MLP(64, [128, 10]) b32, CE, Adam", 64, [128, 10], 32, "ce", "adam"),
    ("MLP(784, [128, 10]) b32, CE, Adam", 784, [128, 10], 32, "ce", "adam"),
    ("MLP(784, [128, 10]) b128, CE, Adam", 784, [128, 10], 128, "ce", "adam"),
    ("MLP(784, [256, 128, 10]) b128, CE, Adam", 784, [256, 128, 10], 128, "ce", "adam"),
    ("MLP(784, [256, 128, 10]) b512, CE, Adam", 784, [256, 128, 10], 512, "ce", "adam"),
]
QUICK = WORKLOADS[:4]
# "cgrad replay" does the work the others do (no gradients for the input data: PyTorch and
# JAX compute none); ", input grads read" also reads an input leaf's grad after each step,
# so that the input gradients are computed (a Graph computes them when Python looks at a
# node, and its numbers then reach every node); ", 2 threads" splits the layer kernels and
# the optimizer step over two threads (Graph(threads=2)); "exact=False" lets the kernels
# fuse multiply-adds (not eager's bits); "cgrad compile(dynamic=True)" is the same step
# as cgrad.compile(fn, dynamic=True) makes it: copied from traces over two and three
# examples instead of built and recorded over the batch (the same numbers).
ENGINES = ["cgrad replay", "cgrad compile(dynamic=True)", "cgrad replay, input grads read",
           "cgrad replay, 2 threads",
           "cgrad replay, exact=False", "cgrad replay, exact=False, 2 threads",
           "torch f64, 1 thread", "torch f64, default threads", "jax jit f64"]
LR = {"sgd": 0.05, "adam": 1e-3}


def available(engine):
    module = {"torch": "torch", "jax": "jax"}.get(engine.split()[0])
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def workload_data(nin, batch, loss):
    """Micrograd's moons for the 2-input demos; MNIST-shaped data otherwise (784 or 64
    features in [0, 1], 10 classes, fixed seed)."""
    if loss == "hinge":
        from cgrad.datasets import make_moons
        X, y = make_moons(batch, noise=0.1, seed=1)
        return X, (2 * y - 1).astype(np.float64)
    rng = np.random.default_rng(1)
    return rng.uniform(0, 1, (batch, nin)), rng.integers(0, 10, batch)


def flops(nin, nouts, batch):
    """Nominal multiply-adds x 2 of a step: forward, then the weight and input-gradient
    products of backward (6 x batch x weights)."""
    sizes = [nin] + list(nouts)
    weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    return 6.0 * batch * weights


# ---- the steps ------------------------------------------------------------------------------

def cgrad_optimizer(model, opt_kind):
    from cgrad.optim import SGD, Adam
    params = model.parameters()
    return SGD(params, lr=LR["sgd"]) if opt_kind == "sgd" else Adam(params, lr=LR["adam"])


def cgrad_loss(model, nouts, loss_kind, y):
    """(fn of input leaves -> the batch's loss, the targets fn's second input takes)."""
    from cgrad import losses
    params = model.parameters()
    if loss_kind == "hinge":
        def fn(xs, ys):
            return losses.hinge([model(x) for x in xs], ys) + losses.l2(params, 1e-4)
        return fn, y
    def fn(xs, ys):
        return losses.softmax_cross_entropy([model(x) for x in xs], ys)
    return fn, np.eye(nouts[-1])[y]


def cgrad_step(nin, nouts, batch, loss_kind, opt_kind, X, y, model, input_grads, threads=1,
               exact=True, dynamic=False):
    import cgrad
    opt = cgrad_optimizer(model, opt_kind)
    fn, targets = cgrad_loss(model, nouts, loss_kind, y)
    if dynamic:
        step = cgrad.compile(fn, dynamic=True, threads=threads, exact=exact)
        return lambda: step.step(X, targets, optimizer=opt)
    xs, ys = cgrad.inputs(batch, nin), cgrad.inputs(*targets.shape)
    graph = cgrad.Graph(fn(xs, ys), inputs=(xs, ys), input_grads=input_grads,
                        threads=threads, exact=exact)
    if not input_grads:
        return lambda: graph.step(X, targets, optimizer=opt)
    first = xs[0][0]

    def step_reading_input_grads():   # they are computed when Python looks
        loss = graph.step(X, targets, optimizer=opt)
        first.grad
        return loss
    return step_reading_input_grads


def torch_step(nouts, loss_kind, opt_kind, X, y, model):
    import torch
    net = model.to_torch()
    opt = (torch.optim.SGD(net.parameters(), lr=LR["sgd"]) if opt_kind == "sgd"
           else torch.optim.Adam(net.parameters(), lr=LR["adam"]))
    Xt = torch.tensor(X, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64 if loss_kind == "hinge" else torch.int64)

    def step():
        scores = net(Xt)
        if loss_kind == "hinge":
            loss = torch.relu(1 - yt * scores[:, 0]).mean() \
                + 1e-4 * sum((p * p).sum() for p in net.parameters())
        else:
            loss = torch.nn.functional.cross_entropy(scores, yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()
    return step


def jax_step(loss_kind, opt_kind, X, y, model):
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in model.weights()]
    Xj, yj = jnp.asarray(X), jnp.asarray(y)

    def loss_fn(params):
        h = Xj
        for i, (W, b) in enumerate(params):
            h = h @ W.T + b
            if i != len(params) - 1:
                h = jax.nn.relu(h)
        if loss_kind == "hinge":
            l2 = sum((W * W).sum() + (b * b).sum() for W, b in params)
            return jax.nn.relu(1 - yj * h[:, 0]).mean() + 1e-4 * l2
        return -jnp.take_along_axis(jax.nn.log_softmax(h), yj[:, None], 1).mean()

    def sgd(params, state, t):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        return jax.tree_util.tree_map(lambda p, g: p - LR["sgd"] * g, params, grads), state, loss

    def adam(params, state, t):
        loss, g = jax.value_and_grad(loss_fn)(params)
        m, v = state
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        lr = LR["adam"] / (1 - 0.9 ** t)
        c2 = jnp.sqrt(1 - 0.999 ** t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - lr * m / (jnp.sqrt(v) / c2 + 1e-8),
                                        params, m, v)
        return params, (m, v), loss

    update = jax.jit(sgd if opt_kind == "sgd" else adam)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    box = {"params": params, "state": (zeros, zeros), "t": 0}

    def step():
        box["t"] += 1
        box["params"], box["state"], loss = update(box["params"], box["state"],
                                                   float(box["t"]))
        return float(loss)
    return step


def import_engine(engine):
    """The modules an engine's step uses, imported before setup is timed (setup is
    building and recording, or compiling: not loading modules, which this machine
    compiles from source when PYTHONDONTWRITEBYTECODE is set)."""
    if engine.startswith("cgrad"):
        import cgrad.compiled, cgrad.losses, cgrad.optim  # noqa: F401
    elif engine.startswith("torch"):
        import torch.nn.functional, torch.optim  # noqa: F401
    else:
        import jax.numpy  # noqa: F401


def make_step(engine, workload):
    """(step function, setup seconds)."""
    name, nin, nouts, batch, loss_kind, opt_kind = workload
    from cgrad import nn
    X, y = workload_data(nin, batch, loss_kind)
    random.seed(0)
    model = nn.MLP(nin, nouts)
    import_engine(engine)
    start = time.perf_counter()
    if engine.startswith("cgrad"):
        step = cgrad_step(nin, nouts, batch, loss_kind, opt_kind, X, y, model,
                          input_grads="input grads read" in engine,
                          threads=2 if "2 threads" in engine else 1,
                          exact="exact=False" not in engine, dynamic="dynamic" in engine)
    elif engine.startswith("torch"):
        step = torch_step(nouts, loss_kind, opt_kind, X, y, model)
    else:
        step = jax_step(loss_kind, opt_kind, X, y, model)
    threads(engine)
    first = step()
    return step, time.perf_counter() - start, first


def threads(engine):
    if engine.startswith("torch"):
        import torch
        torch.set_num_threads(1 if "1 thread" in engine else DEFAULT_TORCH_THREADS)


DEFAULT_TORCH_THREADS = None


# ---- measuring ----------------------------------------------------------------------------

def setup_and_memory(engine, index, runs=3):
    """In a fresh process: setup seconds (build + record, or compile: up to the end of
    the first step) and the largest resident-memory growth over the process after its
    imports, sampled after setup and after each of three steps.  The median of `runs`
    processes (one process's setup moves by 2x on this VM)."""
    code = (f"import sys; from cgrad.cli import scale; "
            f"print(scale._child({engine!r}, {index}))")
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def _child(engine, index):
    global DEFAULT_TORCH_THREADS
    import cgrad  # noqa: F401  (imports outside the measured growth)
    import_engine(engine)
    if engine.startswith("torch"):
        import torch
        DEFAULT_TORCH_THREADS = torch.get_num_threads()
    before = resident_bytes()
    step, setup, _ = make_step(engine, WORKLOADS[index])
    peak = resident_bytes()
    for _ in range(3):
        step()
        peak = max(peak, resident_bytes())
    return json.dumps({"setup": setup, "memory": peak - before})


def resident_bytes():
    """Resident memory now (ru_maxrss would keep the peak of the imports)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(quick=False, rounds=None, engines=None):
    global DEFAULT_TORCH_THREADS
    engines = [e for e in (engines or ENGINES) if available(e)]
    if any(e.startswith("torch") for e in engines):
        import torch
        DEFAULT_TORCH_THREADS = torch.get_num_threads()
    results = []
    for index, workload in enumerate(QUICK if quick else WORKLOADS):
        name, nin, nouts, batch = workload[:4]
        steps, row = {}, {"workload": name, "engines": {}}
        losses = {}
        for engine in engines:
            steps[engine], _, losses[engine] = make_step(engine, workload)
        n_rounds = rounds or (5 if quick else 15)
        wall = {e: [] for e in engines}
        cpu = {e: [] for e in engines}
        order = random.Random(index)
        for _ in range(n_rounds):
            # Interleaved within the round, in a new order each round; each engine's
            # timed step comes right after an untimed one of its own, as in a training
            # loop (timed right after another engine's step, a small model's step ran
            # up to ~35% slower: whichever engine always followed JAX's or PyTorch's
            # step found its numbers out of the caches).
            for engine in order.sample(engines, len(engines)):
                threads(engine)
                steps[engine]()
                c0, w0 = time.thread_time(), time.perf_counter()
                steps[engine]()
                wall[engine].append(time.perf_counter() - w0)
                cpu[engine].append(time.thread_time() - c0)
        for engine in engines:
            med = statistics.median(wall[engine])
            q = statistics.quantiles(wall[engine], n=4)
            entry = {"wall_ms": 1e3 * med, "cpu_ms": 1e3 * statistics.median(cpu[engine]),
                     "spread": (q[2] - q[0]) / med, "gflops": flops(nin, nouts, batch) / med / 1e9,
                     "first_loss": losses[engine]}
            if not quick:
                entry.update(setup_and_memory(engine, index))
            row["engines"][engine] = entry
        results.append(row)
        print(format_row(row, engines, quick), flush=True)
    return results


def header(engines, quick):
    cols = ["workload"]
    for e in engines:
        cols += [f"{e}: ms (cpu ms)"] + ([] if quick else [f"setup s", "peak MB"])
    cols += ["replay / torch 1 thread", "replay / jax jit", "replay GFLOP/s"]
    if not quick:
        cols += ["replay setup / step", "dynamic setup / step"]
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def format_row(row, engines, quick):
    cells = [row["workload"]]
    for e in engines:
        r = row["engines"][e]
        cells.append(f"{r['wall_ms']:.3g} ({r['cpu_ms']:.3g}) ±{100 * r['spread']:.0f}%")
        if not quick:
            cells += [f"{r['setup']:.2g}", f"{r['memory'] / 1e6:.0f}"]
    ours = row["engines"].get("cgrad replay")
    for other in ("torch f64, 1 thread", "jax jit f64"):
        them = row["engines"].get(other)
        cells.append(f"{ours['wall_ms'] / them['wall_ms']:.2f}x" if ours and them else "-")
    cells.append(f"{ours['gflops']:.1f}" if ours else "-")
    if not quick:   # how many replayed steps building and recording (or copying) cost
        for name in ("cgrad replay", "cgrad compile(dynamic=True)"):
            r = row["engines"].get(name)
            cells.append(f"{1e3 * r['setup'] / r['wall_ms']:.0f}" if r else "-")
    return "| " + " | ".join(cells) + " |"


def main(quick=False, json_path=None, engines=None):
    # Engines share two cores in one process, interleaved: torch's OpenMP workers must
    # not spin after their parallel regions while the next engine runs (set before torch
    # loads; torch's own speed is unchanged).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    wanted = engines or ENGINES
    unknown = [e for e in wanted if e not in ENGINES]
    if unknown:
        raise SystemExit(f"unknown engine(s) {unknown}: choose from {ENGINES}")
    engines = [e for e in wanted if available(e)]
    missing = [e for e in wanted if e not in engines]
    from cgrad._replay import kernel_path
    from cgrad.cli.report import cpu_flags, cpu_name
    print(f"{cpu_name()} ({os.cpu_count()} cores; {cpu_flags()}); replay's kernels: "
          f"{kernel_path()}, exact=False: {kernel_path(False)}\n", flush=True)
    print(header(engines, quick), flush=True)
    results = run(quick, engines=engines)
    if missing:
        print(f"\nnot installed, left out: {', '.join(missing)}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
    return 0
