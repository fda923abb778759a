"""Optimizers whose update loop runs in C over the parameter list.

Their state (momentum, moments) lives in C buffers, not on the Values.  Each step reads
``p.grad`` and writes ``p.data`` exactly as the written-out PyTorch update does."""
from cgrad._optim import ParameterArray


class Optimizer:
    def __init__(self, parameters, n_state):
        self.params = ParameterArray(parameters, n_state)

    def zero_grad(self):
        self.params.zero_grad()


class SGD(Optimizer):
    """p -= lr * g, with optional momentum and L2 weight decay (PyTorch's SGD)."""

    def __init__(self, parameters, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(parameters, 1 if momentum else 0)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay

    def step(self):
        self.params.sgd_step(self.lr, self.momentum, self.weight_decay)


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected, as PyTorch computes it."""

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(parameters, 2)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.steps = 0

    def step(self):
        self.steps += 1
        self.params.adam_step(self.lr, self.betas[0], self.betas[1], self.eps,
                              self.weight_decay, self.steps)
