"""Code from the seed notebooks, run unchanged against cgrad's Value."""
import math
import random

import pytest

import cgrad
from cgrad import reference


def trace(root):
    # builds a set of all nodes and edges in a graph (as written in the seeds)
    nodes, edges = set(), set()

    def build(v):
        if v not in nodes:
            nodes.add(v)
            for child in v._prev:
                edges.add((child, v))
                build(child)
    build(root)
    return nodes, edges


def neuron_example(Value):
    x1 = Value(2.0, label='x1')
    x2 = Value(0.0, label='x2')
    w1 = Value(-3.0, label='w1')
    w2 = Value(1.0, label='w2')
    b = Value(6.8813735870195432, label='b')
    x1w1 = x1 * w1; x1w1.label = 'x1*w1'
    x2w2 = x2 * w2; x2w2.label = 'x2*w2'
    x1w1x2w2 = x1w1 + x2w2; x1w1x2w2.label = 'x1*w1 + x2*w2'
    n = x1w1x2w2 + b; n.label = 'n'
    o = n.tanh(); o.label = 'o'
    return locals()


def test_trace_sees_every_node_and_edge():
    g = neuron_example(cgrad.Value)
    nodes, edges = trace(g['o'])
    assert len(nodes) == 10 and len(edges) == 9
    assert (g['n'], g['o']) in edges and (g['x1'], g['x1w1']) in edges
    labels = {n.label for n in nodes}
    assert {'x1', 'w1', 'x1*w1', 'n', 'o'} <= labels
    from cgrad.viz import dot_source
    source = dot_source(g['o'])    # what draw_dot draws: a record per node, an op oval
    for n in nodes:
        assert f"data {n.data:.4f} | grad {n.grad:.4f}" in source
        if n._op:
            assert f'"{id(n)}{n._op}" -> {id(n)}' in source


def test_manual_backpropagation_by_hand_calls():
    g = neuron_example(cgrad.Value)
    g['o'].grad = 1.0
    for name in ('o', 'n', 'b', 'x1w1x2w2', 'x2w2', 'x1w1'):
        g[name]._backward()
    assert math.isclose(g['o'].data, 0.7071067811865476, rel_tol=1e-15)
    assert math.isclose(g['n'].grad, 0.5, rel_tol=1e-12)
    assert math.isclose(g['x1'].grad, -1.5, rel_tol=1e-12)
    assert math.isclose(g['w1'].grad, 1.0, rel_tol=1e-12)
    assert g['w2'].grad == 0.0 and math.isclose(g['x2'].grad, 0.5, rel_tol=1e-12)


def test_backward_equals_the_hand_calls():
    by_hand = neuron_example(cgrad.Value)
    by_hand['o'].grad = 1.0
    for name in ('o', 'n', 'x1w1x2w2', 'x2w2', 'x1w1'):
        by_hand[name]._backward()
    auto = neuron_example(cgrad.Value)
    auto['o'].backward()
    for name in ('x1', 'x2', 'w1', 'w2', 'b'):
        assert auto[name].grad == by_hand[name].grad


def seed_training_loop(Value, steps):
    """Seed 001's tanh MLP and training loop, verbatim but for the print."""
    class Neuron:
        def __init__(self, nin):
            self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
            self.b = Value(random.uniform(-1, 1))

        def __call__(self, x):
            act = sum((wi*xi for wi, xi in zip(self.w, x)), self.b)
            out = act.tanh()
            return out

        def parameters(self):
            return self.w + [self.b]

    class Layer:
        def __init__(self, nin, nout):
            self.neurons = [Neuron(nin) for _ in range(nout)]

        def __call__(self, x):
            outs = [n(x) for n in self.neurons]
            return outs[0] if len(outs) == 1 else outs

        def parameters(self):
            return [p for neuron in self.neurons for p in neuron.parameters()]

    class MLP:
        def __init__(self, nin, nouts):
            sz = [nin] + nouts
            self.layers = [Layer(sz[i], sz[i+1]) for i in range(len(nouts))]

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

        def parameters(self):
            return [p for layer in self.layers for p in layer.parameters()]

    random.seed(42)
    mlp = MLP(3, [4, 4, 1])
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    ys = [1.0, -1.0, -1.0, 1.0]
    losses = []
    for k in range(steps):
        ypred = [mlp(x) for x in xs]
        loss = sum((yout - ygt)**2 for ygt, yout in zip(ys, ypred))
        for p in mlp.parameters():
            p.grad = 0.0
        loss.backward()
        for p in mlp.parameters():
            p.data += -0.05 * p.grad
        losses.append(loss.data)
    return losses


def test_seed_training_loop_gives_the_reference_loss_curve():
    ours = seed_training_loop(cgrad.Value, 20)
    expected = seed_training_loop(reference.Value, 20)
    assert ours == pytest.approx(expected, rel=1e-12)
    assert ours[-1] < ours[0] / 5  # it really trains


def test_seed_neuron_matches_the_seeds_torch_numbers():
    """The seeds' PyTorch run built b with torch.Tensor([...]): float32, then .double()."""
    torch = pytest.importorskip("torch")
    b32 = torch.Tensor([6.8813735870195432]).double().item()
    x1, x2 = cgrad.Value(2.0), cgrad.Value(0.0)
    w1, w2 = cgrad.Value(-3.0), cgrad.Value(1.0)
    b = cgrad.Value(b32)
    o = (x1 * w1 + x2 * w2 + b).tanh()
    o.backward()
    # printed by the seed notebooks
    assert math.isclose(o.data, 0.7071066904050358, rel_tol=1e-15)
    assert math.isclose(x2.grad, 0.5000001283844369, rel_tol=1e-15)
    assert w2.grad == 0.0
    assert math.isclose(x1.grad, -1.5000003851533106, rel_tol=1e-15)
    assert math.isclose(w1.grad, 1.0000002567688737, rel_tol=1e-15)
