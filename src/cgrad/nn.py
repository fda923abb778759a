"""micrograd's neural-net library: Module, Neuron, Layer, MLP.

Same constructor arguments, defaults, random draws and reprs as micrograd, so
``random.seed(1337)`` gives the same model.  Beyond micrograd: a choice of activation,
fused neurons (one C node for ``w.x + b``), numpy and file round trips, ``to_torch()``.
"""
import json
import operator
import random

import numpy as np

from cgrad._core import dot, fused_layer
from cgrad.engine import Value

ACTIVATIONS = ('relu', 'tanh', 'sigmoid', 'linear')
_NEURON_NAMES = {'relu': 'ReLU', 'tanh': 'Tanh', 'sigmoid': 'Sigmoid', 'linear': 'Linear'}


class Module:

    def zero_grad(self):
        for p in self.parameters():
            p.grad = 0

    def parameters(self):
        return []

    def get_parameters(self):
        """All parameters' data as one float64 array, in parameters() order."""
        return np.array([p.data for p in self.parameters()], dtype=np.float64)

    def set_parameters(self, values):
        """Write an array from get_parameters() back into the parameters."""
        params = self.parameters()
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.shape != (len(params),):
            raise ValueError(f"{type(self).__name__} has {len(params)} parameters, "
                             f"got an array of {values.size}")
        for p, v in zip(params, values.tolist()):
            p.data = v

    def save(self, path):
        """Save architecture and parameters to a numpy .npz file; read back with load()."""
        config = json.dumps({'class': type(self).__name__, 'config': self.config()})
        np.savez(path, config=np.array(config), parameters=self.get_parameters())

    def config(self):
        raise NotImplementedError(f"{type(self).__name__} does not describe its architecture")


def load(path):
    """A model saved by Module.save()."""
    try:
        with np.load(path, allow_pickle=False) as f:
            header = json.loads(str(f['config']))
            parameters = f['parameters']
        cls = {'Neuron': Neuron, 'Layer': Layer, 'MLP': MLP}[header['class']]
        config = header['config']
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path!s} is not a model file saved by cgrad: {error}") from None
    random_state = random.getstate()  # building draws weights: leave the user's stream alone
    try:
        model = cls(**config)
    finally:
        random.setstate(random_state)
    model.set_parameters(parameters)
    return model


def size(name, n):
    """n as an int, if it is a whole number >= 0 (a layer's width, a neuron's inputs)."""
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(n).__name__}") from None
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


class Neuron(Module):

    def __init__(self, nin, nonlin=True, activation=None, fused=True, value_type=Value):
        nin = size("nin", nin)
        if activation is None:
            activation = 'relu' if nonlin else 'linear'
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: choose one of {ACTIVATIONS}")
        self.w = [value_type(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = value_type(0)
        self.nonlin = activation != 'linear'
        self.activation = activation
        self.fused = fused and value_type is Value

    def __call__(self, x):
        if len(x) != len(self.w):
            raise ValueError(f"this neuron takes {len(self.w)} inputs, got {len(x)}")
        if self.fused:
            act = dot(self.w, x, self.b)
        else:
            act = sum((wi*xi for wi, xi in zip(self.w, x)), self.b)
        if self.activation == 'relu':
            return act.relu()
        if self.activation == 'linear':
            return act
        return act.tanh() if self.activation == 'tanh' else act.sigmoid()

    def parameters(self):
        return self.w + [self.b]

    def config(self):
        return {'nin': len(self.w), 'activation': self.activation, 'fused': self.fused}

    def __repr__(self):
        return f"{_NEURON_NAMES[self.activation]}Neuron({len(self.w)})"


class Layer(Module):

    def __init__(self, nin, nout, **kwargs):
        self.neurons = [Neuron(nin, **kwargs) for _ in range(size("nout", nout))]

    def __call__(self, x):
        out = fused_layer(self.neurons, x)  # [n(x) for n in self.neurons], in C
        return out[0] if len(out) == 1 else out

    def parameters(self):
        return [p for n in self.neurons for p in n.parameters()]

    def config(self):
        first = self.neurons[0].config()
        return {'nin': first['nin'], 'nout': len(self.neurons),
                'activation': first['activation'], 'fused': first['fused']}

    def __repr__(self):
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """Hidden layers use `activation` (micrograd: ReLU); the last layer is linear."""

    def __init__(self, nin, nouts, activation='relu', fused=True, value_type=Value):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: choose one of {ACTIVATIONS}")
        sz = [nin] + list(nouts)
        self.activation = activation
        self.layers = [Layer(sz[i], sz[i+1],
                             activation=activation if i != len(nouts)-1 else 'linear',
                             fused=fused, value_type=value_type)
                       for i in range(len(nouts))]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def config(self):
        return {'nin': len(self.layers[0].neurons[0].w),
                'nouts': [len(layer.neurons) for layer in self.layers],
                'activation': self.activation, 'fused': self.layers[0].neurons[0].fused}

    def weights(self):
        """[(W, b), ...] per layer as numpy arrays, W of shape (nout, nin)."""
        return [(np.array([[w.data for w in n.w] for n in layer.neurons]),
                 np.array([n.b.data for n in layer.neurons])) for layer in self.layers]

    def to_torch(self):
        """An equivalent float64 torch.nn.Sequential carrying the same weights."""
        import torch
        modules = []
        act = {'relu': torch.nn.ReLU, 'tanh': torch.nn.Tanh, 'sigmoid': torch.nn.Sigmoid}
        for i, (W, b) in enumerate(self.weights()):
            linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W))
                linear.bias.copy_(torch.from_numpy(b))
            modules.append(linear)
            if i != len(self.layers) - 1 and self.activation != 'linear':
                modules.append(act[self.activation]())
        return torch.nn.Sequential(*modules)

    def __repr__(self):
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
