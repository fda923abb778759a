"""Benchmark workloads, engines and the timing loop.

One workload is the same work for every engine: ``prepare(engine, size)`` returns a
callable that does one repetition and the number of units (ops, nodes, steps) it covers.
An engine that cannot run a workload raises ``Unsupported`` with the reason, which the
report prints instead of a time.  Used by ``benchmarks/`` (pytest-benchmark) and by
``python -m cgrad bench``.
"""
import gc
import importlib
import random
import statistics
import sys
import time
import tracemalloc


class Unsupported(Exception):
    """This engine cannot run this workload; the message says why."""


# ---- engines ------------------------------------------------------------------------------

ENGINES = ["cgrad", "cgrad (replay)", "reference", "micrograd", "micrograd (gc off)",
           "torch (scalar)", "torch (batched)", "torch (batched, default threads)",
           "jax (jit)", "numpy (by hand)"]
TORCH_BATCHED = ("torch (batched)", "torch (batched, default threads)")
TORCH_DEFAULT_THREADS = []   # torch's own thread count, read before any engine sets it


def gc_enabled(engine):
    return "gc off" not in engine


def value_class(engine):
    """The engine's Value class (torch engines have none)."""
    if engine == "cgrad":
        from cgrad import Value
        return Value
    if engine == "cgrad (replay)":
        raise Unsupported("replay re-runs a recorded training step; "
                          "it applies to the step workloads")
    if engine == "numpy (by hand)":
        raise Unsupported("numpy has no autograd: only the training steps are written "
                          "out by hand")
    if engine == "jax (jit)":
        raise Unsupported("measured on the training steps (jit-compiled arrays)")
    if engine == "reference":
        from cgrad.reference import Value
        return Value
    if engine.startswith("micrograd"):
        try:
            return importlib.import_module("micrograd.engine").Value
        except ImportError:
            raise Unsupported("micrograd is not installed (pip install micrograd==0.1.0)")
    raise Unsupported(f"{engine} has no Value class")


def torch_module(engine):
    """torch, set to the engine's threads: its default for "default threads", else 1."""
    try:
        import torch
    except ImportError:
        raise Unsupported("torch is not installed (pip install torch==2.13.0)")
    if not TORCH_DEFAULT_THREADS:
        TORCH_DEFAULT_THREADS.append(torch.get_num_threads())
    torch.set_num_threads(TORCH_DEFAULT_THREADS[0] if "default threads" in engine else 1)
    return torch


def pairs(n, seed=0):
    rng = random.Random(seed)
    return [(rng.uniform(-1, 1), rng.uniform(-1, 1)) for _ in range(n)]


# ---- engine workloads ---------------------------------------------------------------------

def leaf_pairs(engine, size):
    """Leaves for `size` pairs (a, b): one pair of 1-d tensors for torch (batched),
    else a list of scalar pairs of the engine's kind."""
    data = pairs(size)
    if engine.startswith("torch"):
        torch = torch_module(engine)
        leaf = lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True)
        if engine in TORCH_BATCHED:
            return leaf([p[0] for p in data]), leaf([p[1] for p in data])
    else:
        leaf = value_class(engine)
    return [(leaf(x), leaf(y)) for x, y in data]


def build_ops(engine, size):
    """c = a*b + a over `size` pairs of leaves, every result kept: time per op."""
    leaves = leaf_pairs(engine, size)
    if engine in TORCH_BATCHED:
        a, b = leaves
        return (lambda: a * b + a), 2 * size
    return (lambda: [a * b + a for a, b in leaves]), 2 * size


def wide_graph(engine, size):
    """A graph of `size` terms a*b + a summed into one root, and its node count."""
    leaves = leaf_pairs(engine, size)
    if engine in TORCH_BATCHED:
        a, b = leaves
        return (a * b + a).sum(), 5 * size
    terms = [a * b + a for a, b in leaves]
    while len(terms) > 1:  # a balanced tree of sums: wide, only log2(size) deep
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0], 5 * size  # per term: 2 leaves, *, +, and the + that sums it in


def backward_wide(engine, size):
    """backward() over a wide graph (`size` terms a*b + a summed): time per node."""
    root, nodes = wide_graph(engine, size)
    if engine.startswith("torch"):
        return (lambda: root.backward(retain_graph=True)), nodes
    return root.backward, nodes


def chain(engine, depth):
    if engine.startswith("torch"):
        torch = torch_module(engine)
        if engine in TORCH_BATCHED:
            raise Unsupported("a scalar chain has nothing to batch")
        y = x = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        for _ in range(depth):
            y = y * 1.0 + 1.0
        return y, x
    Value = value_class(engine)
    y = x = Value(0.5)
    for _ in range(depth):
        y = y + 1.0
    return y, x


CHAIN_DEPTH_FOR_MICROGRAD = 900  # micrograd's recursive sort fails past ~1,000 levels


def backward_chain(engine, size):
    """backward() on a chain of 900 nodes (deep enough to hurt, shallow enough for
    micrograd's recursion): time per node."""
    y, _ = chain(engine, CHAIN_DEPTH_FOR_MICROGRAD)
    nodes = 2 * CHAIN_DEPTH_FOR_MICROGRAD + 1
    if engine.startswith("torch"):
        return (lambda: y.backward(retain_graph=True)), nodes
    return y.backward, nodes


def bytes_per_node(engine, size):
    """Memory of a kept graph, measured by tracemalloc: bytes per node of a*b."""
    if engine.startswith("torch"):
        raise Unsupported("torch allocates outside Python's allocator; tracemalloc cannot see it")
    Value = value_class(engine)
    a, b = Value(1.5), Value(2.5)
    if engine.startswith("cgrad"):
        # memory kept for reuse (empty slabs) would hold the nodes without being counted
        importlib.import_module("cgrad._core")._trim_slabs()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [a * b for _ in range(size)]
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    list_bytes = sys.getsizeof(kept)
    return (used - list_bytes) / size


def deepest_chain(engine, limit):
    """The deepest chain y = y + 1 that builds and differentiates, trying 10**3 .. limit."""
    depth, best = 1000, 0
    while depth <= limit:
        try:
            y, x = chain(engine, depth)
            y.backward()
            del y
        except RecursionError:
            break
        best = depth
        depth *= 10
    return best


# ---- training-step workloads --------------------------------------------------------------

def generic_cross_entropy(logits, target):
    """Softmax cross-entropy from the ops every Value engine with exp/log has."""
    shift = max(z.data for z in logits)
    return sum((z - shift).exp() for z in logits).log() + shift - logits[target]


def step_data(nin, n_points):
    if nin == 2:
        from cgrad.cli.steps import moons
        X, y = moons()
        return X[:n_points], y[:n_points]
    rng = random.Random(1)
    X = [[rng.uniform(0, 1) for _ in range(nin)] for _ in range(n_points)]
    import numpy as np
    return np.array(X), [rng.randrange(10) for _ in range(n_points)]


def torch_step(engine, nin, nouts, X, y, classify):
    torch = torch_module(engine)
    sizes = [nin] + list(nouts)
    layers = []
    for i in range(len(nouts)):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1], dtype=torch.float64))
        if i != len(nouts) - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    Xt = torch.tensor(X, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.int64 if classify else torch.float64)

    def step():
        scores = model(Xt)
        if classify:
            loss = torch.nn.functional.cross_entropy(scores, yt)
        else:
            loss = torch.relu(1 - yt * scores[:, 0]).mean() \
                + 1e-4 * sum((p * p).sum() for p in model.parameters())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def jax_step(nin, nouts, X, y, classify):
    """The same step in JAX, float64, jit-compiled once (the first call compiles: the
    timing loop's warm-up takes it), all the cores JAX uses."""
    try:
        import jax
    except ImportError:
        raise Unsupported('jax is not installed (pip install "jax[cpu]")')
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    rng = np.random.default_rng(0)
    sizes = [nin] + list(nouts)
    params = [(jnp.asarray(rng.uniform(-1, 1, (a, b))), jnp.zeros(b))
              for a, b in zip(sizes, sizes[1:])]
    Xj = jnp.asarray(np.asarray(X, dtype=float))
    yj = jnp.asarray(np.asarray(y), dtype=jnp.int32 if classify else jnp.float64)

    def loss_fn(params):
        h = Xj
        for i, (W, b) in enumerate(params):
            h = h @ W + b
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        if classify:
            return -jnp.take_along_axis(jax.nn.log_softmax(h), yj[:, None], 1).mean()
        l2 = sum((W * W).sum() + (b * b).sum() for W, b in params)
        return jax.nn.relu(1 - yj * h[:, 0]).mean() + 1e-4 * l2

    @jax.jit
    def update(params):
        grads = jax.grad(loss_fn)(params)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    state = [params]

    def step():
        state[0] = update(state[0])
        jax.block_until_ready(state[0])
    return step


def numpy_step(nin, nouts, X, y, classify):
    """The same step written out in numpy, forward and backward by hand: what a user
    writes when they leave autograd behind (ReLU hidden layers, SGD at lr 0.1)."""
    import numpy as np
    rng = np.random.default_rng(0)
    sizes = [nin] + list(nouts)
    Ws = [rng.uniform(-1, 1, (a, b)) for a, b in zip(sizes, sizes[1:])]
    bs = [np.zeros(b) for b in sizes[1:]]
    X = np.asarray(X, dtype=float)
    labels = np.asarray(y)
    one_hot = np.eye(nouts[-1])[labels] if classify else None
    n = len(X)

    def step():
        acts = [X]
        for i, (W, b) in enumerate(zip(Ws, bs)):
            z = acts[-1] @ W + b
            acts.append(np.maximum(z, 0.0) if i < len(Ws) - 1 else z)
        out = acts[-1]
        if classify:                      # softmax cross-entropy, mean over the batch
            e = np.exp(out - out.max(axis=1, keepdims=True))
            g = (e / e.sum(axis=1, keepdims=True) - one_hot) / n
        else:                             # micrograd's hinge + 1e-4 * L2
            margin = 1 - labels * out[:, 0]
            g = np.where(margin > 0, -labels / n, 0.0)[:, None]
        for i in range(len(Ws) - 1, -1, -1):
            gW = acts[i].T @ g + (2e-4 * Ws[i] if not classify else 0.0)
            gb = g.sum(axis=0) + (2e-4 * bs[i] if not classify else 0.0)
            if i:
                g = (g @ Ws[i].T) * (acts[i] > 0)
            Ws[i] -= 0.1 * gW
            bs[i] -= 0.1 * gb
    return step


def replayed_step(nin, nouts, X, y, classify):
    """The cgrad step recorded once as a Graph and replayed: graph.step(X, labels)."""
    import numpy as np
    import cgrad
    from cgrad import losses, nn
    from cgrad.cli import steps as demo
    from cgrad.optim import SGD
    model = nn.MLP(nin, nouts)
    xs = cgrad.inputs(len(X), nin)
    scores = [model(x) for x in xs]
    if classify:
        ys, labels = cgrad.inputs(len(y), nouts[-1]), np.eye(nouts[-1])[y]
        loss = losses.softmax_cross_entropy(scores, ys)
    else:
        ys, labels = cgrad.inputs(len(y)), np.array(y, dtype=float)
        loss = losses.hinge(scores, ys) + losses.l2(model.parameters(), 1e-4)
    graph = cgrad.Graph(loss, inputs=(xs, ys))
    opt = SGD(model.parameters(), lr=demo.learning_rate(0))
    return lambda: graph.step(X, labels, optimizer=opt)


def training_step(nin, nouts, classify):
    """One full step (forward, zero_grad, backward, SGD update) of MLP(nin, nouts):
    micrograd's hinge + L2 on moons for 2 inputs, softmax cross-entropy otherwise."""
    def prepare(engine, n_points):
        X, y = step_data(nin, n_points)
        if engine in TORCH_BATCHED:
            return torch_step(engine, nin, nouts, X, y, classify), 1
        if engine == "numpy (by hand)":
            return numpy_step(nin, nouts, X, y, classify), 1
        if engine == "jax (jit)":
            return jax_step(nin, nouts, X, y, classify), 1
        if engine == "torch (scalar)":
            raise Unsupported("an MLP of 0-d tensors is not how torch is used; "
                              "see torch (batched)")
        from cgrad import losses, nn
        from cgrad.cli import steps as demo
        from cgrad.optim import SGD
        if engine == "cgrad (replay)":
            return replayed_step(nin, nouts, X, y, classify), 1
        if engine == "cgrad":
            model = nn.MLP(nin, nouts)
            opt = SGD(model.parameters(), lr=0.1)
            if not classify:
                return (lambda: demo.cgrad_step(model, opt, X, y, 0, 100)), 1

            def step():
                logits = [model(row) for row in X.tolist()]
                loss = losses.softmax_cross_entropy(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            return step, 1
        Value = value_class(engine)
        if engine.startswith("micrograd"):
            if classify:
                raise Unsupported("micrograd 0.1.0 has no exp or log for softmax cross-entropy")
            model = importlib.import_module("micrograd.nn").MLP(nin, nouts)
        else:
            from cgrad import nn
            model = nn.MLP(nin, nouts, value_type=Value)
        if not classify:
            return (lambda: demo.micrograd_step(model, X, y, 0, 100, Value=Value)), 1

        def step():
            rows = [list(map(Value, r)) for r in X.tolist()]
            loss = sum(generic_cross_entropy(model(r), t) for r, t in zip(rows, y)) \
                * (1.0 / len(y))
            model.zero_grad()
            loss.backward()
            for p in model.parameters():
                p.data -= 0.1 * p.grad
        return step, 1
    return prepare


def hessian_vector_product(engine, n_points):
    """H v for the squared error of a tanh MLP(2, [16, 16, 1]) over n_points, with
    respect to its 337 parameters: a gradient recorded as a graph, then differentiated.
    cgrad (replay) records that graph once and replays it with new data and v."""
    import numpy as np
    X, y = step_data(2, n_points)
    rng = np.random.default_rng(0)
    if engine in TORCH_BATCHED:
        torch = torch_module(engine)
        model = torch.nn.Sequential(torch.nn.Linear(2, 16, dtype=torch.float64), torch.nn.Tanh(),
                                    torch.nn.Linear(16, 16, dtype=torch.float64), torch.nn.Tanh(),
                                    torch.nn.Linear(16, 1, dtype=torch.float64))
        params = list(model.parameters())
        vector = [torch.tensor(rng.standard_normal(p.shape)) for p in params]
        Xt, yt = torch.tensor(X), torch.tensor(y, dtype=torch.float64)

        def run():
            loss = ((model(Xt)[:, 0] - yt) ** 2).mean()
            grads = torch.autograd.grad(loss, params, create_graph=True)
            dot = sum((g * v).sum() for g, v in zip(grads, vector))
            return torch.autograd.grad(dot, params)
        return run, 1
    if engine == "torch (scalar)":
        raise Unsupported("measured on batched tensors: see torch (batched)")
    if engine == "numpy (by hand)":
        raise Unsupported("numpy has no autograd")
    if engine == "jax (jit)":
        raise Unsupported("not written for JAX here (bench --scale times JAX's training steps)")
    if not engine.startswith("cgrad"):
        raise Unsupported("no gradients of gradients: its gradients are floats, not Values")
    import cgrad
    from cgrad import losses, nn
    model = nn.MLP(2, [16, 16, 1], activation="tanh")
    params = model.parameters()
    vector = rng.standard_normal(len(params))
    if engine == "cgrad":
        rows, targets = X.tolist(), list(map(float, y))

        def run():
            loss = losses.mse([model(r) for r in rows], targets)
            return cgrad.hvp(loss, params, vector.tolist())
        return run, 1
    xs, ys, vs = cgrad.inputs(n_points, 2), cgrad.inputs(n_points), cgrad.inputs(len(params))
    loss = losses.mse([model(x) for x in xs], ys)
    grads = cgrad.grad(loss, params, create_graph=True)
    dot = cgrad.sum([g * v for g, v in zip(grads, vs)])
    hv = cgrad.grad(dot, params, create_graph=True)
    graph = cgrad.Graph(None, inputs=(xs, ys, vs), outputs=hv, input_grads=False)
    return (lambda: graph.forward(X, np.asarray(y, dtype=float), vector)), 1


# ---- the table of workloads ---------------------------------------------------------------

class Workload:
    """One measured task: `key` names it on the command line (--only) and in JSON;
    `label` (a format string over n, the size) is what the table prints, so that a row
    says what it ran in that mode."""

    def __init__(self, key, label, prepare, unit, sizes, kind="time"):
        self.key, self.label_format, self.prepare, self.unit, self.sizes, self.kind = \
            key, label, prepare, unit, sizes, kind

    def label(self, mode):
        return self.label_format.format(n=self.sizes[mode])


WORKLOADS = [
    Workload("build", "build ops: c = a*b + a over {n:,} pairs, kept", build_ops, "op",
             {"quick": 5000, "full": 50000}),
    Workload("backward-wide", "backward(): a wide graph of {n:,} terms a*b + a",
             backward_wide, "node", {"quick": 5000, "full": 50000}),
    Workload("backward-chain", "backward(): a chain 900 deep", backward_chain, "node",
             {"quick": 0, "full": 0}),
    Workload("demo-step", "demo step: MLP(2, [16, 16, 1]) on {n} moons, hinge + L2, SGD",
             training_step(2, [16, 16, 1], False), "step", {"quick": 2, "full": 100}),
    Workload("wide-step", "step: MLP(2, [64, 64, 1]) on {n} moons, hinge + L2, SGD",
             training_step(2, [64, 64, 1], False), "step", {"quick": 2, "full": 100}),
    Workload("digits-step", "step: MLP(64, [128, 10]), batch {n}, cross-entropy, SGD",
             training_step(64, [128, 10], True), "step", {"quick": 1, "full": 32}),
    Workload("hvp", "Hessian-vector product: tanh MLP(2, [16, 16, 1]) over {n} points",
             hessian_vector_product, "hvp", {"quick": 8, "full": 32}),
    Workload("memory", "bytes per node of a kept graph of {n:,} products",
             bytes_per_node, "byte", {"quick": 50000, "full": 100000}, kind="memory"),
    Workload("depth", "deepest differentiable chain (tried to {n:,})", deepest_chain, "node",
             {"quick": 20000, "full": 1000000}, kind="depth"),
]


# ---- timing -------------------------------------------------------------------------------

def time_once(fn, engine):
    enabled = gc.isenabled()
    if not gc_enabled(engine):
        gc.disable()
    try:
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()
    del result
    return elapsed


def measure(workload, engine, mode="full", repeats=7, budget=10.0):
    """Run one workload on one engine: {'median', 'spread', 'unit', 'repeats'} where
    median is per unit (seconds, bytes or depth) and spread the relative IQR.
    Raises Unsupported."""
    size = workload.sizes[mode]
    if workload.kind == "memory":
        if engine in ("cgrad (replay)", "numpy (by hand)", "jax (jit)"):
            value_class(engine)
        return {"median": workload.prepare(engine, size), "spread": 0.0, "repeats": 1}
    if workload.kind == "depth":
        if engine in TORCH_BATCHED:
            raise Unsupported("a scalar chain has nothing to batch")
        if engine in ("cgrad (replay)", "numpy (by hand)", "jax (jit)"):
            value_class(engine)       # raises: why this engine has no such workload
        return {"median": workload.prepare(engine, size), "spread": 0.0, "repeats": 1}
    fn, units = workload.prepare(engine, size)
    if engine.startswith("torch"):
        torch_module(engine)        # its threads, whatever an earlier engine set
    try:
        times = [time_once(fn, engine)]  # warm-up, also sizes the run
    except RecursionError:
        raise Unsupported("RecursionError: its recursive topological sort cannot go "
                          f"{sys.getrecursionlimit()} levels deep (Python's limit)")
    n = max(2 if mode == "quick" else 3, min(repeats, int(budget / max(times[0], 1e-9))))
    times = [time_once(fn, engine) for _ in range(n)]
    per_unit = [t / units for t in times]
    med = statistics.median(per_unit)
    q = statistics.quantiles(per_unit, n=4) if len(per_unit) >= 4 else [min(per_unit), 0, max(per_unit)]
    return {"median": med, "spread": (q[2] - q[0]) / med if med else 0.0, "repeats": n}
