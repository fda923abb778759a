"""Handwritten digits with graph replay: the README's full example.
MLP(64, [32, 10]), softmax cross-entropy, Adam, minibatches of 32.  Needs scikit-learn.

    python examples/digits.py
"""
import random

import numpy as np

import cgrad
from cgrad import losses, nn
from cgrad.datasets import load_digits
from cgrad.optim import Adam

random.seed(0)                                        # nn.MLP draws weights like micrograd
X_train, y_train, X_test, y_test = load_digits()      # 8x8 pixels in [0, 1], labels 0-9
model = nn.MLP(64, [32, 10])
optimizer = Adam(model.parameters(), lr=0.01)

# 1. Build one training step, once, over leaves that stand for a batch of 32 examples.
xs, ys = cgrad.inputs(32, 64), cgrad.inputs(32, 10)
loss = losses.softmax_cross_entropy([model(x) for x in xs], ys)   # ys: one-hot rows
train_step = cgrad.Graph(loss, inputs=(xs, ys))

# 2. Replay it for every batch: forward, backward and the Adam update run in C.
targets = np.eye(10)[y_train]
rng = np.random.default_rng(0)
for epoch in range(20):
    order = rng.permutation(len(y_train))
    for i in range(0, len(order) - 31, 32):           # the full batches of 32
        batch = order[i:i + 32]
        train_step.step(X_train[batch], targets[batch], optimizer=optimizer)

# 3. Predict: a graph with outputs and no loss, over the whole test set at once.
xt = cgrad.inputs(len(X_test), 64)
predict = cgrad.Graph(inputs=xt, outputs=[model(x) for x in xt])
accuracy = np.mean(predict.forward(X_test).argmax(axis=1) == y_test)
print(f"test accuracy {accuracy:.1%}")
