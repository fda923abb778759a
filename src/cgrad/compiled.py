"""A function of arrays, traced once per input shape and replayed after: the convention
Python users know from ``jax.jit`` and ``torch.compile``, over :class:`cgrad.Graph`.

A training step whose shape varies (a document's length, the last partial batch) needs
one recorded graph per shape; ``cgrad.compile(fn)`` records each the first time it is
called with arrays of that shape and replays it on every later call.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from cgrad._replay import Graph, inputs


class Compiled:
    """``fn`` (input leaves -> a loss Value, or ``(loss, outputs)``) as a replayed step.

    ``compiled(*arrays)`` runs the forward pass (the loss, or the outputs of a graph
    without a loss); ``compiled.step(*arrays, optimizer=opt)`` one training step.  Each
    distinct tuple of array shapes records ``fn`` once, over fresh leaves of those
    shapes (``cgrad.inputs``); ``graphs`` holds them, by shapes.  Options (``threads``,
    ``exact``, ``input_grads``) go to every Graph.  As with jax.jit, ``fn`` runs only when a shape
    is new: what it reads besides its arguments (the model's parameters) is recorded
    as nodes, and numbers it computes in Python from them are fixed at that time."""

    def __init__(self, fn: Callable[..., Any], **graph_options: Any) -> None:
        if not callable(fn):
            raise TypeError(f"cgrad.compile() needs a function, got {type(fn).__name__}")
        self.fn = fn
        self.graph_options = graph_options
        self.graphs: dict[tuple, Graph] = {}

    def graph_for(self, arrays: tuple) -> Graph:
        """The Graph for these arrays' shapes, recorded now if it is the first call."""
        shapes = tuple(np.shape(a) for a in arrays)
        graph = self.graphs.get(shapes)
        if graph is None:
            leaves = tuple(inputs(*shape) for shape in shapes)
            out = self.fn(*leaves)
            loss, outputs = out if isinstance(out, tuple) else (out, None)
            graph = Graph(loss, inputs=leaves, outputs=outputs, **self.graph_options)
            self.graphs[shapes] = graph
        return graph

    def __call__(self, *arrays: Any) -> Any:
        return self.graph_for(arrays).forward(*arrays)

    def step(self, *arrays: Any, optimizer: Any) -> float:
        """One training step on these arrays (see Graph.step); returns the loss."""
        return self.graph_for(arrays).step(*arrays, optimizer=optimizer)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", "fn")
        return f"cgrad.compile({name}: {len(self.graphs)} shape(s) recorded)"


def compile(fn: Callable[..., Any] | None = None, **graph_options: Any) -> Any:
    """``cgrad.compile(fn)``, or ``@cgrad.compile`` / ``@cgrad.compile(threads=2)`` as a
    decorator: see :class:`Compiled`."""
    if fn is None:
        return lambda f: Compiled(f, **graph_options)
    return Compiled(fn, **graph_options)
