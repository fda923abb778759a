"""Handwritten digits (scikit-learn's 8x8 set): MLP(64, [32, 10]), softmax cross-entropy,
Adam, minibatches of 32.  Needs scikit-learn.

    python examples/digits.py [epochs]
"""
import random
import sys
import time

import numpy as np

from cgrad import losses, nn
from cgrad.datasets import load_digits
from cgrad.optim import Adam


def accuracy(model, X, y):
    return np.mean([int(np.argmax([v.data for v in model(list(x))])) == t
                    for x, t in zip(X.tolist(), y)])


def main(epochs=15, batch_size=32, seed=0):
    random.seed(seed)
    X_train, y_train, X_test, y_test = load_digits(seed=seed)
    model = nn.MLP(64, [32, 10])
    optimizer = Adam(model.parameters(), lr=0.01)
    rng = np.random.RandomState(seed)
    for epoch in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(y_train))
        total = 0.0
        for i in range(0, len(order), batch_size):
            batch = order[i:i + batch_size]
            logits = [model(list(x)) for x in X_train[batch].tolist()]
            loss = losses.softmax_cross_entropy(logits, y_train[batch].tolist())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.data * len(batch)
        seconds = time.perf_counter() - start
        print(f"epoch {epoch + 1:2d}  loss {total / len(order):.4f}  "
              f"test accuracy {accuracy(model, X_test, y_test) * 100:.1f}%  ({seconds:.2f} s)",
              flush=True)
    return accuracy(model, X_test, y_test)


if __name__ == "__main__":
    final = main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
    print(f"final test accuracy {final * 100:.1f}%")
