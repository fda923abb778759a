"""`python -m cgrad bench --microgpt`: Karpathy's microgpt four ways, and in PyTorch
and JAX, in one run.

- microgpt on its own Value: the program as written (cgrad.programs.microgpt), its
  pure-Python engine: the baseline every ratio is taken against;
- microgpt on cgrad.Value: the same program, its Value class replaced by cgrad's (the
  one-line change); the same losses bit for bit;
- cgrad.gpt eager: the model written with cgrad.dot / logsumexp and cgrad's Adam, each
  step rebuilt;
- cgrad.gpt replayed: the same, each document length recorded once (cgrad.compile) and
  replayed; its setup (recording every length met) is reported apart;
- PyTorch: the same model, weights and updates written as a PyTorch user would (every
  position of a document at once, float64, torch.optim.Adam; microgpt_torch.py), when
  torch is installed: what the tool people would otherwise pick costs;
- JAX: the same in JAX, jit-compiled once per document length (microgpt_jax.py), when
  jax is installed; its setup (compiling every length met) is reported apart, as
  replay's is.

Every variant trains on the same documents for the same steps, from microgpt's seed.
Rounds interleave the variants; a figure is the median over rounds of each round's
median step (wall and thread CPU time).  A step is the forward pass, backward and the
Adam update (microgpt's own Python loop for the first two variants).
"""
import importlib
import importlib.util
import random
import statistics
import subprocess
import sys
import time

from cgrad.datasets import make_names

VARIANTS = ("microgpt on its own Value", "microgpt on cgrad.Value", "cgrad.gpt eager",
            "cgrad.gpt replayed", "PyTorch (the same model)", "JAX jit (the same model)")
PEER_MODULES = {VARIANTS[4]: "torch", VARIANTS[5]: "jax"}


def variants():
    """The variants this machine can run (PyTorch's and JAX's where installed; found
    without importing them)."""
    return tuple(v for v in VARIANTS
                 if v not in PEER_MODULES or importlib.util.find_spec(PEER_MODULES[v]))


# In a memory_child() process: the resident bytes after each step (None elsewhere).
_resident_after_steps = None


def sample_memory():
    if _resident_after_steps is not None:
        from cgrad.cli.scale import resident_bytes
        _resident_after_steps.append(resident_bytes())


def run_program(value_class, docs, steps, n_embd, block_size):
    """Step times of microgpt's program on this Value class: (wall, thread CPU, wall of
    forward + backward) per step."""
    from cgrad.programs.microgpt import run
    marks, backward_ends = [], []
    start = (time.perf_counter(), time.thread_time())

    def on_step(step, loss):
        marks.append((time.perf_counter(), time.thread_time()))
        sample_memory()
    run(value_class, docs, num_steps=steps, n_embd=n_embd, n_head=4, block_size=block_size,
        num_samples=0, on_step=on_step,
        on_backward=lambda: backward_ends.append(time.perf_counter()))
    marks = [start] + marks
    return [(b[0] - a[0], b[1] - a[1], end - a[0])
            for a, b, end in zip(marks, marks[1:], backward_ends)]


def intervals(marks):
    return [(b[0] - a[0], b[1] - a[1], None) for a, b in zip(marks, marks[1:])]


def microgpt_start(docs, n_embd, block_size):
    """microgpt's shuffled documents, tokenizer and starting weights (cgrad.gpt's draw
    from microgpt's seed): (docs, uchars, bos, model)."""
    from cgrad.gpt import MicroGPT, tokenizer
    random.seed(42)
    docs = list(docs)
    random.shuffle(docs)
    uchars, bos, vocab_size = tokenizer(docs)
    return docs, uchars, bos, MicroGPT(vocab_size, n_embd, block_size, 1, 4)


def run_peer(variant, docs, steps, n_embd, block_size):
    """Step times of the same model in PyTorch or JAX (their threads as the user gets
    them); for JAX also the setup: one pass over the documents that compiles every
    length (its steps train too), as replay's records every length."""
    from cgrad.gpt import document_arrays
    framework = PEER_MODULES[variant]
    make_step = importlib.import_module(f"cgrad.cli.microgpt_{framework}").make_step
    docs, uchars, bos, model = microgpt_start(docs, n_embd, block_size)
    step = make_step(model, steps)
    batches = [document_arrays(docs[k % len(docs)], uchars, bos, block_size)
               for k in range(steps)]
    return timed_steps(step, batches, first_each_length=framework == "jax")


def timed_steps(step, batches, first_each_length):
    """Step times over the batches: (wall, thread CPU, None) per step, and with
    first_each_length the setup, (seconds, lengths): one pass that runs the first
    batch of every length (recording or compiling it; its steps train too)."""
    setup = None
    if first_each_length:
        t0 = time.perf_counter()
        seen = set()
        for k, (X, Y) in enumerate(batches):
            if X.shape not in seen:
                seen.add(X.shape)
                step(k, X, Y)
                sample_memory()
        setup = (time.perf_counter() - t0, len(seen))
    marks = [(time.perf_counter(), time.thread_time())]
    for k, (X, Y) in enumerate(batches):
        step(k, X, Y)
        marks.append((time.perf_counter(), time.thread_time()))
        sample_memory()
    return intervals(marks), setup


def run_cgrad_way(docs, steps, n_embd, block_size, replay):
    """Step times of cgrad.gpt, eager or replayed; for replay also the setup: one pass
    over the documents that records every length (its steps train too)."""
    import cgrad
    from cgrad.gpt import document_arrays
    from cgrad.optim import Adam
    docs, uchars, bos, model = microgpt_start(docs, n_embd, block_size)
    optimizer = Adam(model.params, lr=0.01, betas=(0.85, 0.99), eps=1e-8)
    step_fn = cgrad.compile(model.loss, input_grads=False)
    batches = [document_arrays(docs[k % len(docs)], uchars, bos, block_size)
               for k in range(steps)]

    def one(k, X, Y):
        optimizer.lr = 0.01 * (1 - k / steps)
        if replay:
            return step_fn.step(X, Y, optimizer=optimizer)
        optimizer.zero_grad()
        loss = model.loss(X.tolist(), Y.tolist())
        loss.backward()
        optimizer.step()
        return loss.data

    return timed_steps(one, batches, first_each_length=replay)


def run_variant(variant, docs, steps, n_embd, block_size):
    """(step times, setup or None) of one fresh run of a variant."""
    import cgrad
    from cgrad.programs.microgpt import MicrogptValue
    if variant == VARIANTS[0]:
        return run_program(MicrogptValue, docs, steps, n_embd, block_size), None
    if variant == VARIANTS[1]:
        return run_program(cgrad.Value, docs, steps, n_embd, block_size), None
    if variant in PEER_MODULES:
        return run_peer(variant, docs, steps, n_embd, block_size)
    return run_cgrad_way(docs, steps, n_embd, block_size, variant == VARIANTS[3])


def memory(n_embd, block_size, steps, progress=None, chosen=None):
    """{variant: bytes}: the largest resident-memory growth of a fresh process running
    the variant's steps, over the process after its imports, sampled after each step
    (as `bench --scale` measures its engines)."""
    out = {}
    for variant in chosen or variants():
        if progress:
            print(f"  microgpt n_embd {n_embd}: memory of {variant} ...", file=progress,
                  flush=True)
        code = (f"from cgrad.cli import microgpt_bench; print(microgpt_bench.memory_child("
                f"{variant!r}, {n_embd}, {block_size}, {steps}))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                text=True, check=True).stdout
        out[variant] = int(result.strip().splitlines()[-1])
    return out


def memory_child(variant, n_embd, block_size, steps):
    global _resident_after_steps
    import cgrad.gpt  # noqa: F401  (imports outside the measured growth)
    import cgrad.optim  # noqa: F401
    from cgrad.cli.scale import resident_bytes
    from cgrad.programs import microgpt  # noqa: F401
    if variant in PEER_MODULES:
        importlib.import_module(f"cgrad.cli.microgpt_{PEER_MODULES[variant]}")
        importlib.import_module({"torch": "torch.optim", "jax": "jax.numpy"}[
            PEER_MODULES[variant]])
    docs = make_names(2000)
    _resident_after_steps = []
    before = resident_bytes()
    run_variant(variant, docs, steps, n_embd, block_size)
    return max(_resident_after_steps) - before


def measure(n_embd, block_size, steps, rounds, progress=None):
    """{variant: {"wall": s per step, "cpu": s, "spread": IQR / median}}, and setup."""
    import cgrad
    from cgrad.programs.microgpt import MicrogptValue
    docs = make_names(2000)
    chosen = variants()
    per_round = {v: [] for v in chosen}
    setups = {}
    run_program(MicrogptValue, docs, 2, n_embd, block_size)   # warm-up, not timed: a
    run_program(cgrad.Value, docs, 2, n_embd, block_size)     # process's first steps
    run_cgrad_way(docs, 2, n_embd, block_size, True)          # fault in fresh memory
    for variant in chosen:                                    # (and load the peers'
        if variant in PEER_MODULES:                           # kernels)
            run_peer(variant, docs, 2, n_embd, block_size)
    for r in range(rounds):
        for variant in chosen:
            if progress:
                print(f"  microgpt n_embd {n_embd}, round {r + 1}/{rounds}: {variant} ...",
                      file=progress, flush=True)
            # Twice: the first run's steps fault in the memory a training program's
            # first steps do (after the variant before it freed its own), the second's
            # are the steps it runs from then on.  Setups are the first run's.
            first, s = run_variant(variant, docs, steps, n_embd, block_size)
            setups[variant] = s or setups.get(variant)
            times, _ = run_variant(variant, docs, steps, n_embd, block_size)
            per_round[variant].append((
                statistics.median(t[0] for t in times), statistics.median(t[1] for t in times),
                statistics.median(t[2] for t in times) if times[0][2] is not None else None,
                statistics.median(t[0] for t in first)))
    out = {}
    for variant, figures in per_round.items():
        walls = sorted(f[0] for f in figures)
        q = statistics.quantiles(walls, n=4) if len(walls) > 1 else [walls[0]] * 3
        out[variant] = {"wall": statistics.median(walls),
                        "cpu": statistics.median(f[1] for f in figures),
                        "spread": (q[2] - q[0]) / statistics.median(walls),
                        "forward_backward": statistics.median(f[2] for f in figures)
                        if figures[0][2] is not None else None,
                        "first_run_wall": statistics.median(f[3] for f in figures)}
    return {"n_embd": n_embd, "block_size": block_size, "steps": steps, "rounds": rounds,
            "variants": out,
            "setup": {variant: {"seconds": setup[0], "lengths": setup[1]}
                      for variant, setup in setups.items() if setup}}


def table(runs):
    lines = ["| model | variant | ms per step (wall) | ms per step (thread CPU) | spread (IQR) "
             "| vs microgpt on its own Value | vs PyTorch | first run: ms per step (wall) "
             "| memory (MB) |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        base = run["variants"][VARIANTS[0]]["wall"]
        torch_run = run["variants"].get(VARIANTS[4])
        label = (f"n_embd {run['n_embd']}, block {run['block_size']}, 1 layer, 4 heads, "
                 f"{run['steps']} steps")
        base_fb = run["variants"][VARIANTS[0]]["forward_backward"]
        for variant, r in run["variants"].items():
            fb = ""
            if r["forward_backward"]:
                fb = (f" (forward + backward {r['forward_backward'] * 1e3:.3g} ms: "
                      f"{base_fb / r['forward_backward']:.3g}x)")
            vs_torch = f"{torch_run['wall'] / r['wall']:.3g}x" if torch_run else "-"
            lines.append(f"| {label} | {variant} | {r['wall'] * 1e3:.3g} | {r['cpu'] * 1e3:.3g} "
                         f"| {r['spread'] * 100:.0f}% | {base / r['wall']:.3g}x{fb} "
                         f"| {vs_torch} | {r['first_run_wall'] * 1e3:.3g} "
                         f"| {megabytes(r.get('memory'))} |")
        for variant, s in run["setup"].items():   # cgrad's recording, JAX's compiling
            what = "recorded" if variant == VARIANTS[3] else "compiled"
            lines.append(f"| {label} | {variant}: setup, {s['lengths']} lengths {what} | "
                         f"{s['seconds'] * 1e3:.3g} total | | | = "
                         f"{s['seconds'] / run['variants'][variant]['wall']:.0f} of its "
                         f"steps | | | |")
    lines.append("\nKey: a step is forward, backward and Adam on one document (a made-up "
                 "name, 2-13 tokens); wall and thread-CPU medians over rounds of each round's "
                 "median step; spread: interquartile range of the rounds' medians over their "
                 "median; ratios: the wall time of microgpt on its own pure-Python Value, "
                 "or of the same model in PyTorch (float64, its default threads), over this "
                 "variant's, in the same run (above 1x: this variant is faster).  Each "
                 "round runs each variant twice, a fresh program each time; the figures "
                 "are the second run's, its steps those a training program runs after its "
                 "first few; the first-run column is the first run's (the first steps, which "
                 "build the model and fault in fresh memory after the variant before it "
                 "freed its own).  Memory: the largest resident-memory growth of a fresh "
                 "process running the variant's steps, over the process after its "
                 "imports (the model, the optimizer, the recorded or compiled steps; "
                 "full runs only).")
    return "\n".join(lines)


def megabytes(n):
    return "-" if n is None else f"{n / 1e6:.0f}"


def main(quick=False, progress=None):
    """The runs the table shows; the full run also measures each variant's memory."""
    sizes = [(16, 16, 3 if quick else 20, 1 if quick else 3)]
    if not quick:
        sizes.append((64, 64, 3, 3))
    runs = [measure(n, b, steps, rounds, progress) for n, b, steps, rounds in sizes]
    if not quick:
        for run in runs:
            grown = memory(run["n_embd"], run["block_size"], run["steps"], progress)
            for variant, figures in run["variants"].items():
                figures["memory"] = grown.get(variant)
    return runs
