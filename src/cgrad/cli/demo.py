"""`python -m cgrad demo`: micrograd's own demo (cgrad.cli.steps), trained on cgrad,
timed against the pure-Python reference engine in the same run."""
import statistics
import sys
import time

import numpy as np

from cgrad import reference
from cgrad.cli.steps import cgrad_step, demo_model, learning_rate, micrograd_step, moons
from cgrad.optim import SGD


def train(steps=100, report_every=10, out=sys.stdout):
    """Train the demo on cgrad; returns (model, losses, accuracies, seconds per step)."""
    X, y = moons()
    model = demo_model()
    optimizer = SGD(model.parameters(), lr=learning_rate(0, steps))
    curve, accs, times = [], [], []
    for k in range(steps):
        start = time.perf_counter()
        loss, acc = cgrad_step(model, optimizer, X, y, k, steps)
        times.append(time.perf_counter() - start)
        curve.append(loss)
        accs.append(acc)
        if report_every and (k % report_every == 0 or k == steps - 1):
            print(f"step {k:3d}  loss {loss:.6f}  accuracy {acc * 100:5.1f}%", file=out, flush=True)
    return model, curve, accs, times


def time_reference(steps, out=sys.stdout):
    """Seconds per step of the same demo on the pure-Python reference engine."""
    X, y = moons()
    model = demo_model(reference.Value)
    times = []
    for k in range(steps):
        start = time.perf_counter()
        micrograd_step(model, X, y, k, 100)
        times.append(time.perf_counter() - start)
        print(f"  reference step {k}: {times[-1] * 1e3:.0f} ms", file=out, flush=True)
    return times


def plot(model, X, y, curve, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    h = 0.05
    xx, yy = np.meshgrid(np.arange(X[:, 0].min() - 1, X[:, 0].max() + 1, h),
                         np.arange(X[:, 1].min() - 1, X[:, 1].max() + 1, h))
    Z = np.array([model(list(p)).data > 0 for p in np.c_[xx.ravel(), yy.ravel()].tolist()])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.contourf(xx, yy, Z.reshape(xx.shape), cmap=plt.cm.Spectral, alpha=0.8)
    left.scatter(X[:, 0], X[:, 1], c=y, s=40, cmap=plt.cm.Spectral, edgecolors="k")
    left.set_title("decision boundary")
    right.plot(curve)
    right.set_yscale("log")
    right.set_xlabel("step")
    right.set_title("loss")
    fig.tight_layout()
    fig.savefig(path)


def main(args):
    print(f"Training micrograd's demo on cgrad: MLP(2, [16, 16, 1]), 100 moons, "
          f"{args.steps} steps")
    model, curve, accs, times = train(args.steps)
    per_step = statistics.median(times)
    print(f"\nfinal loss {curve[-1]:.6f}, accuracy {accs[-1] * 100:.0f}%")
    print(f"cgrad: {per_step * 1e3:.2f} ms per step (median of {len(times)})")
    if args.compare_steps:
        print(f"\nThe same steps on the pure-Python reference engine "
              f"(micrograd's code), {args.compare_steps} of them:")
        ref = statistics.median(time_reference(args.compare_steps))
        print(f"reference: {ref * 1e3:.0f} ms per step -> cgrad is {ref / per_step:.0f}x faster")
    if args.plot:
        X, y = moons()
        plot(model, X, y, curve, args.plot)
        print(f"wrote {args.plot}")
    return 0
