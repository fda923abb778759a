"""A function of arrays, traced once per input shape and replayed after: the convention
Python users know from ``jax.jit`` and ``torch.compile``, over :class:`cgrad.Graph`.

A training step whose shape varies (a document's length, the last partial batch) needs
one recorded graph per shape; ``cgrad.compile(fn)`` records each the first time it is
called with arrays of that shape and replays it on every later call.  With
``dynamic=True`` (torch.compile's name for it) the batch axis is free: ``fn`` is traced
over two examples and three, and the step for any other batch size is copied from those
(:class:`cgrad.BatchTemplate`) without building a Value per example.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from cgrad._replay import Graph, batch_template, leaves_holding, real_array


def loss_and_outputs(out: Any) -> tuple:
    """What fn returned, as (loss, outputs): a tuple is both, anything else the loss."""
    return out if isinstance(out, tuple) else (out, None)


class Compiled:
    """``fn`` (input leaves -> a loss Value, or ``(loss, outputs)``) as a replayed step.

    ``compiled(*arrays)`` runs the forward pass (the loss, or the outputs of a graph
    without a loss); ``compiled.step(*arrays, optimizer=opt)`` one training step.  Each
    distinct tuple of array shapes records ``fn`` once, over fresh leaves holding the
    numbers of the call that met it (as torch.compile traces its first inputs: a log or
    a division of an input is built where the data defines it); ``graphs`` holds them,
    by shapes.  Options (``threads``, ``exact``, ``input_grads``) go to every Graph.  As
    with jax.jit, ``fn`` runs only when a shape is new: what it reads besides its
    arguments (the model's parameters) is recorded as nodes, and numbers it computes in
    Python from them are fixed at that time.

    ``dynamic=True``: every array's first axis is the batch, of any size.  ``fn`` runs
    twice, over the batch's first two examples and its first three (repeated if it has
    two; over zeros if building over those raises), and must build one graph per
    example: a loss sums them by one ``cgrad.sum`` (as cgrad's losses build it from
    ``[model(x) for x in xs]``) or by Python's ``sum()``, and scales by 1/batch or not
    at all; outputs are one entry per
    example (``(None, outputs)`` for a prediction; with a loss, outputs it reads).  The
    step for any other size is copied from those two recordings (checked against each
    other; anything else raises ValueError saying what), with the numbers of the graph
    ``fn`` would build over that batch, bit for bit, and no Value per example: the
    setup and memory of a large batch do not grow with its nodes.  A batch of one
    example is traced as usual.  Input gradients are not computed (``fn``'s input
    leaves are its own)."""

    def __init__(self, fn: Callable[..., Any], dynamic: bool = False,
                 **graph_options: Any) -> None:
        if not callable(fn):
            raise TypeError(f"cgrad.compile() needs a function, got {type(fn).__name__}")
        if dynamic not in (True, False):
            raise TypeError(f"dynamic must be True or False, not {dynamic!r}")
        if dynamic and graph_options.get("input_grads"):
            raise ValueError("dynamic=True computes no input gradients: fn's input leaves "
                             "are made for its two traces, not for your batches")
        self.fn = fn
        self.dynamic = bool(dynamic)
        self.graph_options = graph_options
        self.graphs: dict[tuple, Graph] = {}
        self.templates: dict[tuple, Any] = {}

    def graph_for(self, arrays: tuple) -> Graph:
        """The Graph for these arrays' shapes, recorded now if it is the first call."""
        try:
            shapes = tuple(np.shape(a) for a in arrays)
        except ValueError:   # ragged rows: say which input
            shapes = None
        graph = self.graphs.get(shapes)
        if graph is None:   # checked before fn is traced over them
            data = tuple(real_array(i, array) for i, array in enumerate(arrays))
            if self.dynamic:
                graph = self.copied(data)
            else:
                graph = self.record(data, **self.graph_options)
            self.graphs[shapes] = graph
        return graph

    def record(self, data: tuple, **options: Any) -> Graph:
        """fn traced over leaves holding these arrays' numbers, recorded."""
        return self.recorded(self.traced(data), **options)

    def traced(self, data: tuple) -> tuple:
        """(leaves holding the arrays' numbers, what fn builds over them)."""
        leaves = tuple(leaves_holding(array) for array in data)
        return leaves, self.fn(*leaves)

    @staticmethod
    def recorded(trace: tuple, **options: Any) -> Graph:
        leaves, out = trace
        loss, outputs = loss_and_outputs(out)
        return Graph(loss, inputs=leaves, outputs=outputs, **options)

    def copied(self, data: tuple) -> Graph:
        """dynamic=True: the Graph for this batch size, from the template for the shapes
        past the batch axis (traced now if new, over this batch's first examples)."""
        shapes = tuple(array.shape for array in data)
        if not shapes or any(len(s) == 0 for s in shapes) \
                or len({s[0] for s in shapes}) != 1:
            raise ValueError(f"dynamic=True needs arrays whose first axis is the batch, "
                             f"the same length in each; got shapes {shapes}")
        batch, rest = shapes[0][0], tuple(s[1:] for s in shapes)
        if batch == 0:
            raise ValueError("an empty batch (0 examples) has no loss")
        options = dict(self.graph_options, input_grads=False)
        if batch == 1:
            return self.record(data, **options)
        template = self.templates.get(rest)
        if template is None:
            try:
                two, three = self.traces_of_two_and_three(data)
            except (ArithmeticError, ValueError) as error:
                # A few examples alone can overflow where the batch gives inf or NaN
                # (a sum of their huge losses): over zeros, then; the copy runs on the
                # whole batch, and raises what eager raises there.
                try:
                    two, three = self.traces_of_two_and_three(
                        tuple(np.zeros_like(array[:3]) for array in data))
                except (ArithmeticError, ValueError):
                    raise error from None
            leaves, out = three                                   # recorded to compare
            loss, outputs = loss_and_outputs(out)
            template = batch_template(self.recorded(two, **options), loss, leaves, outputs)
            self.templates[rest] = template
        return template.graph(batch)

    def traces_of_two_and_three(self, data: tuple) -> tuple:
        """fn traced over the batch's first two examples and its first three (the first
        again if it has two)."""
        examples = [0, 1, 2 % len(data[0])]
        return (self.traced(tuple(array[:2] for array in data)),
                self.traced(tuple(array[examples] for array in data)))

    def __call__(self, *arrays: Any) -> Any:
        return self.graph_for(arrays).forward(*arrays)

    def step(self, *arrays: Any, optimizer: Any) -> float:
        """One training step on these arrays (see Graph.step); returns the loss."""
        return self.graph_for(arrays).step(*arrays, optimizer=optimizer)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", "fn")
        if self.dynamic:
            return (f"cgrad.compile({name}, dynamic=True: {len(self.graphs)} batch "
                    f"size(s) from {len(self.templates)} template(s))")
        return f"cgrad.compile({name}: {len(self.graphs)} shape(s) recorded)"


def compile(fn: Callable[..., Any] | None = None, *, dynamic: bool = False,
            **graph_options: Any) -> Any:
    """``cgrad.compile(fn)``, or ``@cgrad.compile`` / ``@cgrad.compile(threads=2)`` as a
    decorator: see :class:`Compiled`."""
    if fn is None:
        return lambda f: Compiled(f, dynamic=dynamic, **graph_options)
    return Compiled(fn, dynamic=dynamic, **graph_options)
