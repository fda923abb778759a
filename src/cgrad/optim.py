"""Optimizers whose update loop runs in C over the parameter list.

Their state (momentum, moments) lives in C buffers, not on the Values.  Each step reads
``p.grad`` and writes ``p.data`` exactly as the written-out PyTorch update does."""
from __future__ import annotations

import math
from typing import Any, Iterable

from cgrad._core import Value
from cgrad._optim import ParameterArray


def checked(name: str, value: Any, below: float | None = None) -> float:
    """value as a float, if it is finite, >= 0 and (given `below`) < below.

    Hyperparameters are plain attributes a training loop may change between steps (a
    learning-rate schedule), so every step checks them: a NaN learning rate would
    otherwise silently turn every parameter into NaN."""
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}") from None
    if not (math.isfinite(x) and x >= 0 and (below is None or x < below)):
        bound = f"in [0, {below:g})" if below is not None else "finite and >= 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return x


class Optimizer:
    """An update rule over leaf Values, its state (velocity, moments) in C buffers."""

    def __init__(self, parameters: Iterable[Value], n_state: int) -> None:
        self._params = ParameterArray(parameters, n_state)

    @property
    def params(self) -> ParameterArray:
        """The parameters, with the update's state (read-only: make a new optimizer to
        train other parameters)."""
        return self._params

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0."""
        self.params.zero_grad()


class SGD(Optimizer):
    """p -= lr * g, with optional momentum and L2 weight decay (PyTorch's SGD)."""

    def __init__(self, parameters: Iterable[Value], lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(parameters, 1)  # a velocity buffer, in case momentum is set later
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.hyperparameters()

    def hyperparameters(self) -> tuple[float, float, float]:
        """(lr, momentum, weight_decay) as floats, checked; raises on a bad one."""
        return (checked("lr", self.lr), checked("momentum", self.momentum),
                checked("weight_decay", self.weight_decay))

    def step(self) -> None:
        """Update every parameter from its grad (nothing is written if one would
        overflow: OverflowError)."""
        self.params.sgd_step(*self.hyperparameters())


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected, as PyTorch computes it."""

    def __init__(self, parameters: Iterable[Value], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(parameters, 2)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.steps = 0
        self.hyperparameters()

    def hyperparameters(self) -> tuple[float, float, float, float, float]:
        """(lr, beta1, beta2, eps, weight_decay) as floats, checked; raises on a bad one."""
        try:
            beta1, beta2 = self.betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {self.betas!r}") from None
        eps = checked("eps", self.eps)
        if eps == 0:
            raise ValueError("eps must be > 0: with eps 0 a parameter whose gradient is 0 "
                             "would become NaN (0 / 0)")
        return (checked("lr", self.lr), checked("betas[0]", beta1, below=1.0),
                checked("betas[1]", beta2, below=1.0), eps,
                checked("weight_decay", self.weight_decay))

    def step(self) -> None:
        """Update every parameter from its grad (nothing is written if one would
        overflow: OverflowError)."""
        lr, beta1, beta2, eps, weight_decay = self.hyperparameters()
        self.params.adam_step(lr, beta1, beta2, eps, weight_decay, self.steps + 1)
        self.steps += 1   # only once the update went through: a refused step does not count
