"""Compare backward() with central differences, as the seeds check gradients by hand."""
from __future__ import annotations

from typing import Callable, Sequence

from cgrad.engine import Value


class GradcheckError(AssertionError):
    """backward() and the finite differences disagree."""


def gradcheck(f: Callable[..., Value], inputs: Sequence[float], eps: float = 1e-6,
              rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """True when f's backward() gradients match central differences at `inputs`.

    f takes Values (one per input) and returns a Value; inputs are numbers.  Raises
    GradcheckError naming every input whose gradient is off."""
    inputs = [float(x.data if isinstance(x, Value) else x) for x in inputs]
    xs = [Value(x) for x in inputs]
    out = f(*xs)
    if not isinstance(out, Value):
        raise TypeError(f"f must return a Value, got {type(out).__name__}")
    out.backward()
    wrong = []
    for i, x in enumerate(inputs):
        up = inputs[:i] + [x + eps] + inputs[i + 1:]
        down = inputs[:i] + [x - eps] + inputs[i + 1:]
        numeric = (f(*map(Value, up)).data - f(*map(Value, down)).data) / (2 * eps)
        if abs(xs[i].grad - numeric) > atol + rtol * abs(numeric):
            wrong.append(f"input {i}: backward {xs[i].grad!r}, finite differences {numeric!r}")
    if wrong:
        raise GradcheckError("gradients disagree:\n  " + "\n  ".join(wrong))
    return True
