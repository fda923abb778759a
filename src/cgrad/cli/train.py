"""`python -m cgrad train`: an MLP on the handwritten digits, trained with graph replay.

The step's graph (model, softmax cross-entropy, over one minibatch of input leaves) is
built once per batch size and replayed in C for every batch: forward, backward and the
Adam update with no Python per node.
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
    """Replayed training and evaluation graphs for one model, one per batch size."""

    def __init__(self, model, n_classes, optimizer):
        self.model, self.n_classes, self.optimizer = model, n_classes, optimizer
        self.nin = len(model.layers[0].neurons[0].w)
        self.train_graphs, self.eval_graphs = {}, {}

    def train_graph(self, batch_size):
        if batch_size not in self.train_graphs:
            xs, ys = cgrad.inputs(batch_size, self.nin), cgrad.inputs(batch_size, self.n_classes)
            loss = losses.softmax_cross_entropy([self.model(x) for x in xs], ys)
            self.train_graphs[batch_size] = cgrad.Graph(loss, inputs=(xs, ys))
        return self.train_graphs[batch_size]

    def eval_graph(self, batch_size):
        if batch_size not in self.eval_graphs:
            xs = cgrad.inputs(batch_size, self.nin)
            self.eval_graphs[batch_size] = cgrad.Graph(inputs=xs,
                                                       outputs=[self.model(x) for x in xs])
        return self.eval_graphs[batch_size]

    def epoch(self, X, y, batch_size, rng):
        """One pass over (X, y) in shuffled minibatches; returns the mean loss."""
        order = rng.permutation(len(y))
        one_hot = np.eye(self.n_classes)[y]
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            graph = self.train_graph(len(batch))
            total += graph.step(X[batch], one_hot[batch], optimizer=self.optimizer) * len(batch)
        return total / len(order)

    def predict(self, X, batch_size=256):
        """Class scores for every row of X."""
        scores = [self.eval_graph(len(X[i:i + batch_size])).forward(X[i:i + batch_size])
                  for i in range(0, len(X), batch_size)]
        return np.concatenate(scores).reshape(len(X), self.n_classes)

    def accuracy(self, X, y):
        return float(np.mean(self.predict(X).argmax(axis=1) == y))


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
