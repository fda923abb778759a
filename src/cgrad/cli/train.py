"""`python -m cgrad train`: an MLP on the handwritten digits, trained with graph replay.

The training step (model, softmax cross-entropy, Adam) and the class scores are
`cgrad.compile(..., dynamic=True)` functions: traced once over two and three examples,
copied in C for each batch size met (the last, partial batch included), and replayed for
every batch with no Python per node.
"""
import statistics
import random
import time

import numpy as np

import cgrad
from cgrad import losses, nn
from cgrad.datasets import load_digits
from cgrad.optim import Adam


class Trainer:
    """A model's replayed training step and class scores, for any batch size."""

    def __init__(self, model, n_classes, optimizer):
        self.n_classes, self.optimizer = n_classes, optimizer
        self.train_step = cgrad.compile(
            lambda xs, ys: losses.softmax_cross_entropy([model(x) for x in xs], ys),
            dynamic=True)
        self.scores = cgrad.compile(lambda xs: (None, [model(x) for x in xs]), dynamic=True)

    def epoch(self, X, y, batch_size, rng):
        """One pass over (X, y) in shuffled minibatches; returns the mean loss."""
        order = rng.permutation(len(y))
        one_hot = np.eye(self.n_classes)[y]
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            total += self.train_step.step(X[batch], one_hot[batch],
                                          optimizer=self.optimizer) * len(batch)
        return total / len(order)

    def accuracy(self, X, y):
        return float(np.mean(self.scores(X).argmax(axis=1) == y))


def main(args):
    random.seed(args.seed)
    X_train, y_train, X_test, y_test = load_digits(seed=args.seed)
    sizes = [64] + args.hidden + [10]
    model = nn.MLP(64, args.hidden + [10])
    trainer = Trainer(model, 10, Adam(model.parameters(), lr=args.lr))
    print(f"Training MLP({', '.join(map(str, sizes))}) on {len(y_train)} digits "
          f"({len(y_test)} held out): Adam lr={args.lr}, batches of {args.batch_size}, "
          f"graph replay")
    rng = np.random.RandomState(args.seed)
    seconds = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        loss = trainer.epoch(X_train, y_train, args.batch_size, rng)
        seconds.append(time.perf_counter() - start)
        print(f"epoch {epoch:3d}  loss {loss:.4f}  train {trainer.accuracy(X_train, y_train):6.1%}"
              f"  test {trainer.accuracy(X_test, y_test):6.1%}  ({seconds[-1] * 1e3:.0f} ms)",
              flush=True)
    print(f"\ntest accuracy {trainer.accuracy(X_test, y_test):.1%}; "
          f"{statistics.median(seconds) * 1e3:.0f} ms per epoch (median; the first "
          f"includes building the graphs)")
    return 0
