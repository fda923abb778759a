"""A grid of MLPs on the handwritten digits, trained in parallel processes: learning rate
x width x seed, a table of test accuracies.  Needs scikit-learn and joblib
(pip install 'cgrad[data,sweep]').

    python examples/sweep.py                 # one process per core
    python examples/sweep.py --jobs 1        # the same grid, one after the other
    python examples/sweep.py --dask tcp://scheduler:8786   # on a Dask cluster
"""
import argparse
import itertools
import random
import time

import numpy as np

import cgrad
from cgrad import losses, nn
from cgrad.datasets import load_digits
from cgrad.optim import Adam


def train(lr, width, seed, epochs=40, batch=32):
    """Test accuracy of MLP(64, [width, 10]) after `epochs` of Adam at `lr`."""
    rng = np.random.default_rng(seed)                  # the batches
    X_train, y_train, X_test, y_test = load_digits()
    model = nn.MLP(64, [width, 10], rng=random.Random(seed))   # the weights: a stream
    # of their own (a worker's other threads draw from the `random` module too)
    optimizer = Adam(model.parameters(), lr=lr)
    xs, ys = cgrad.inputs(batch, 64), cgrad.inputs(batch, 10)
    step = cgrad.Graph(losses.softmax_cross_entropy([model(x) for x in xs], ys),
                       inputs=(xs, ys), input_grads=False)
    targets = np.eye(10)[y_train]
    for _ in range(epochs):
        order = rng.permutation(len(y_train))
        for i in range(0, len(order) - batch + 1, batch):
            rows = order[i:i + batch]
            step.step(X_train[rows], targets[rows], optimizer=optimizer)
    xt = cgrad.inputs(len(X_test), 64)
    predict = cgrad.Graph(inputs=xt, outputs=[model(x) for x in xt])
    return float(np.mean(predict.forward(X_test).argmax(axis=1) == y_test))


GRID = [{"lr": lr, "width": width, "seed": seed}
        for lr, width, seed in itertools.product([0.003, 0.01, 0.03], [32, 64, 128, 256], [0, 1, 2])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=-1, help="processes (-1: one per core)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs per model")
    parser.add_argument("--dask", metavar="ADDRESS", nargs="?", const="local",
                        help="run on a Dask cluster (no address: a local one)")
    args = parser.parse_args()
    grid = [dict(config, epochs=args.epochs) for config in GRID]
    start = time.perf_counter()
    if args.dask:
        address = None if args.dask == "local" else args.dask
        accuracies = cgrad.sweep(train, grid, backend="dask", address=address,
                                 n_jobs=args.jobs)
    else:
        accuracies = cgrad.sweep(train, grid, n_jobs=args.jobs)
    seconds = time.perf_counter() - start
    seeds = len({config["seed"] for config in GRID})
    print("| lr | width | test accuracy, one per seed |")
    print("|---|---|---|")
    for i in range(0, len(GRID), seeds):
        config = GRID[i]
        print(f"| {config['lr']} | {config['width']} | "
              + ", ".join(f"{a:.1%}" for a in accuracies[i:i + seeds]) + " |")
    print(f"{len(GRID)} models in {seconds:.1f} s")


if __name__ == "__main__":
    main()
