"""micrograd's neural-net library: Module, Neuron, Layer, MLP.

Same constructor arguments, defaults, random draws and reprs as micrograd, so
``random.seed(1337)`` gives the same model (and ``rng=random.Random(1337)`` too, from a
stream of its own).  Beyond micrograd: a choice of activation,
fused neurons (one C node for ``w.x + b``), numpy and file round trips, ``to_torch()``.
"""
from __future__ import annotations

import json
import lzma
import operator
import os
import random
import zipfile
import zlib

from typing import Any, Sequence, Union

import numpy as np

from cgrad._core import ParameterList, _zero_grads, dot, fused_layer
from cgrad.engine import Value

ACTIVATIONS = ('relu', 'tanh', 'sigmoid', 'linear', 'gelu', 'gelu_tanh', 'silu', 'softplus',
               'leaky_relu')
_NEURON_NAMES = {'relu': 'ReLU', 'tanh': 'Tanh', 'sigmoid': 'Sigmoid', 'linear': 'Linear',
                 'gelu': 'GELU', 'gelu_tanh': 'GELUTanh', 'silu': 'SiLU',
                 'softplus': 'Softplus', 'leaky_relu': 'LeakyReLU'}


def _activate(act: Value, activation: str) -> Value:
    """act passed through the named activation ('linear': unchanged)."""
    if activation == 'linear':
        return act
    if activation == 'gelu_tanh':
        return act.gelu(approximate='tanh')
    return getattr(act, activation)()


class Module:
    """micrograd's base class: a model is anything with parameters()."""

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0 (before a backward(), as micrograd does)."""
        _zero_grads(self.parameters())

    def parameters(self) -> list[Value]:
        """The model's leaf Values, in a fixed order (what optimizers update)."""
        return []

    def get_parameters(self) -> np.ndarray:
        """All parameters' data as one float64 array, in parameters() order."""
        return np.array([p.data for p in self.parameters()], dtype=np.float64)

    def set_parameters(self, values: Any) -> None:
        """Write an array from get_parameters() back into the parameters."""
        params = self.parameters()
        values = np.asarray(values)
        if values.dtype.kind not in "biuf":
            raise TypeError(f"set_parameters() needs real numbers, got an array of "
                            f"dtype {values.dtype}")
        values = values.astype(np.float64).ravel()
        if values.shape != (len(params),):
            raise ValueError(f"{type(self).__name__} has {len(params)} parameters, "
                             f"got an array of {values.size}")
        for p, v in zip(params, values.tolist()):
            p.data = v

    def save(self, path: Any) -> None:
        """Save architecture and parameters to a numpy .npz file; read back with load()."""
        config = json.dumps({'class': type(self).__name__, 'config': self.config()})
        np.savez(path, config=np.array(config), parameters=self.get_parameters())

    def config(self) -> dict[str, Any]:
        """The architecture as plain data, enough to build the model again (nn.load)."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its architecture")


# A model file is small: its config is a few hundred bytes, and it stores one float64
# per parameter.  Anything else in it is refused before it is read or built.
MAX_CONFIG_BYTES = 1 << 16
MAX_PARAMETERS = 1 << 28    # 2 GiB of float64
# np.savez stores members uncompressed; np.savez_compressed deflates them, and a model's
# float64 parameters (random mantissas) barely compress.  A member inflating more than
# this is refused: a few kB of compressed zeros could otherwise ask for a huge model.
MAX_INFLATION = 16


def load(path: Any) -> Module:
    """A model saved by Module.save().  A file that is not one (truncated, corrupt, or
    describing a model it does not hold the parameters of) raises ValueError."""
    path = str(path)
    if not os.path.exists(path) and os.path.exists(path + '.npz'):
        path += '.npz'   # np.savez added the suffix
    try:
        cls, config, n_params = _read_header(path)
        expected = cls.count_parameters(**config)
        if expected != n_params:
            raise ValueError(f"its {header_name(cls, config)} has {expected} parameters "
                             f"but the file stores {n_params}")
        with np.load(path, allow_pickle=False) as f:
            parameters = f['parameters']
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile,
            zlib.error, RecursionError, NotImplementedError, RuntimeError,
            lzma.LZMAError, AttributeError, IndexError) as error:
        # what zipfile, numpy and json raise on a crafted file (LZMAError: a member
        # compressed with lzma; RecursionError: a deeply nested config; RuntimeError:
        # an encrypted member), each a file that is not a model
        raise ValueError(f"{path} is not a model file saved by cgrad: {error}") from None
    random_state = random.getstate()  # building draws weights: leave the user's stream alone
    try:
        model = cls(**config)
    finally:
        random.setstate(random_state)
    model.set_parameters(parameters)
    return model


def header_name(cls, config):
    """How an error names a stored model: MLP(nin=2, nouts=[16, 1], ...)."""
    return f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in config.items())})"


def _read_header(path):
    """(the model class, its config, the number of parameters stored), read and checked
    without decompressing or building anything large."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        if set(members) != {'config.npy', 'parameters.npy'}:
            raise ValueError(f"it holds {sorted(members)}, not config.npy and parameters.npy")
        room = os.path.getsize(path)
        for info in members.values():   # what each member inflates to, bounded by the file
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ValueError(f"its {info.filename} is compressed with method "
                                 f"{info.compress_type}, which np.savez never writes")
            most = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED
                                         else MAX_INFLATION)
            if info.compress_size > room or info.file_size > most:
                raise ValueError(f"its {info.filename} claims {info.file_size} bytes from "
                                 f"{info.compress_size} stored in a file of {room}")
        if members['config.npy'].file_size > MAX_CONFIG_BYTES:
            raise ValueError("its config is too large")
        with archive.open('config.npy') as f:
            header = json.loads(str(np.lib.format.read_array(f, allow_pickle=False)))
        with archive.open('parameters.npy') as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"its parameters are in .npy format {version}")
            shape, _, dtype = read_header(f)
        if dtype != np.float64 or len(shape) != 1:
            raise ValueError(f"its parameters are {dtype} of shape {shape}, "
                             f"not a float64 vector")
        stored = members['parameters.npy'].file_size
        if not 8 * shape[0] <= stored <= 8 * shape[0] + 65536:
            raise ValueError(f"its parameter array takes {stored} bytes for "
                             f"{shape[0]} numbers (truncated or padded)")
    if not isinstance(header, dict) or set(header) != {'class', 'config'}:
        raise ValueError("its config is not a cgrad model description")
    cls = {'Neuron': Neuron, 'Layer': Layer, 'MLP': MLP}.get(header['class'])
    config = header['config']
    if cls is None or not isinstance(config, dict):
        raise ValueError(f"it describes an unknown model {header['class']!r}")
    return cls, config, shape[0]


def _check_config(nin, nouts, activation, fused):
    """The config of a saved model, or ValueError."""
    if not isinstance(nin, int) or not isinstance(nouts, list) or not nouts \
            or not all(isinstance(n, int) for n in nouts) or nin < 0 or min(nouts) < 1:
        raise ValueError(f"its sizes nin={nin!r}, nouts={nouts!r} are not a model's")
    if activation not in ACTIVATIONS or not isinstance(fused, bool):
        raise ValueError(f"its activation {activation!r} or fused={fused!r} is not a model's")
    sizes = [nin] + nouts
    count = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    if count > MAX_PARAMETERS:
        raise ValueError(f"it asks for {count} parameters, more than cgrad will load")
    return count


def size(name, n):
    """n as an int, if it is a whole number >= 0 (a layer's width, a neuron's inputs)."""
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(n).__name__}") from None
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


_SPEC_FIELDS = ('w', 'b', 'activation', 'fused')


class Neuron(Module):
    """micrograd's neuron: act(w . x + b), weights drawn uniformly from [-1, 1], bias 0.

    ``activation`` is 'relu' (micrograd's ``nonlin=True``), 'tanh', 'sigmoid', 'gelu'
    (exact), 'gelu_tanh' (GPT-2's), 'silu', 'softplus', 'leaky_relu' (slope 0.01) or
    'linear'.  ``fused`` (the default) computes w . x + b as one dot node, with the very
    numbers of micrograd's ``sum(wi*xi ...) + b``; ``fused=False`` builds micrograd's
    per-scalar graph (what its trace_graph notebook draws).  ``rng``: a random.Random
    to draw the weights from instead of the `random` module's (the same draws as
    ``random.seed(s)`` for ``random.Random(s)``; its own stream, which no other code or
    thread advances: a Dask worker's threads also draw from `random`)."""

    def __init__(self, nin: int, nonlin: bool = True, activation: str | None = None,
                 fused: bool = True, value_type: Any = Value,
                 rng: random.Random | None = None) -> None:
        nin = size("nin", nin)
        uniform = (rng or random).uniform
        if activation is None:
            activation = 'relu' if nonlin else 'linear'
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: choose one of {ACTIVATIONS}")
        self.w = ParameterList([value_type(uniform(-1, 1)) for _ in range(nin)])
        self.b = value_type(0)
        self.nonlin = activation != 'linear'
        self.activation = activation
        self.fused = fused and value_type is Value

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in _SPEC_FIELDS:
            self._refresh_layer_spec()

    def _refresh_layer_spec(self) -> None:
        """What a Layer hands the core for this neuron: plain data (weights, bias,
        activation) while it is fused and computed by Neuron's own __call__, else None
        (the layer then calls it).  Kept up to date as w, b, activation or fused change."""
        d = self.__dict__
        fusable = (d.get('fused') and all(k in d for k in _SPEC_FIELDS)
                   and type(self).__call__ is Neuron.__call__)
        d['_layer_spec'] = (d['w'], d['b'], d['activation']) if fusable else None

    def __call__(self, x: Sequence[Any]) -> Value:
        """The neuron's output for inputs x (Values or numbers)."""
        if len(x) != len(self.w):
            raise ValueError(f"this neuron takes {len(self.w)} inputs, got {len(x)}")
        if self.fused:
            act = dot(self.w, x, self.b)
        else:
            act = sum((wi*xi for wi, xi in zip(self.w, x)), self.b)
        return _activate(act, self.activation)

    def parameters(self) -> list[Value]:
        """The weights, then the bias."""
        return self.w + [self.b]

    def config(self) -> dict[str, Any]:
        """{'nin', 'activation', 'fused'}: enough to build it again."""
        return {'nin': len(self.w), 'activation': self.activation, 'fused': self.fused}

    @staticmethod
    def count_parameters(nin=None, activation=None, fused=True, **rest):
        """How many parameters Neuron(**config) has; ValueError for a bad config."""
        if rest:
            raise ValueError(f"unknown settings {sorted(rest)}")
        return _check_config(nin, [1], activation, fused)

    def __repr__(self):
        return f"{_NEURON_NAMES[self.activation]}Neuron({len(self.w)})"


class Layer(Module):
    """nout neurons over the same nin inputs (keyword arguments go to each Neuron)."""

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        self.neurons = [Neuron(nin, **kwargs) for _ in range(size("nout", nout))]

    def __call__(self, x: Sequence[Any]) -> Union[Value, list[Value]]:
        """The neurons' outputs (a single Value for a one-neuron layer, as micrograd)."""
        # [n(x) for n in self.neurons], fused neurons in one C call over plain data
        out = fused_layer([getattr(n, '_layer_spec', None) or n for n in self.neurons], x)
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        """Every neuron's parameters, neuron by neuron."""
        params: list[Value] = []
        for n in self.neurons:   # extend: no Python step per parameter
            params.extend(n.parameters())
        return params

    def config(self) -> dict[str, Any]:
        """{'nin', 'nout', 'activation', 'fused'}: enough to build it again."""
        if not self.neurons:
            raise ValueError("a layer of no neurons has no config to save")
        first = self.neurons[0].config()
        return {'nin': first['nin'], 'nout': len(self.neurons),
                'activation': first['activation'], 'fused': first['fused']}

    @staticmethod
    def count_parameters(nin=None, nout=None, activation=None, fused=True, **rest):
        """How many parameters Layer(**config) has; ValueError for a bad config."""
        if rest:
            raise ValueError(f"unknown settings {sorted(rest)}")
        return _check_config(nin, [nout], activation, fused)

    def __repr__(self):
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """Hidden layers use `activation` (micrograd: ReLU); the last layer is linear."""

    def __init__(self, nin: int, nouts: Sequence[int], activation: str = 'relu',
                 fused: bool = True, value_type: Any = Value,
                 rng: random.Random | None = None) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: choose one of {ACTIVATIONS}")
        try:
            nouts = list(nouts)
        except TypeError:
            raise TypeError(f"nouts is the list of layer widths, as in MLP(2, [16, 16, 1]); "
                            f"got {type(nouts).__name__} {nouts!r:.40}") from None
        if not nouts:
            raise ValueError("an MLP needs at least one layer: nouts=[] has none")
        if any(size("a layer's width", n) == 0 for n in nouts):
            raise ValueError(f"every layer needs at least one neuron: nouts={nouts!r}")
        sz = [nin] + nouts
        self.activation = activation
        self.layers = [Layer(sz[i], sz[i+1],
                             activation=activation if i != len(nouts)-1 else 'linear',
                             fused=fused, value_type=value_type, rng=rng)
                       for i in range(len(nouts))]

    def __call__(self, x: Sequence[Any]) -> Any:
        """The last layer's output for inputs x.  A hidden layer of one neuron hands the
        next its Value as a list of one (micrograd's MLP raises TypeError there)."""
        for layer in self.layers[:-1]:
            x = layer(x)
            if not isinstance(x, list):
                x = [x]
        return self.layers[-1](x)

    def parameters(self) -> list[Value]:
        """Every layer's parameters, layer by layer (micrograd's order)."""
        params: list[Value] = []
        for layer in self.layers:
            params.extend(layer.parameters())
        return params

    def config(self) -> dict[str, Any]:
        """{'nin', 'nouts', 'activation', 'fused'}: enough to build it again."""
        return {'nin': len(self.layers[0].neurons[0].w),
                'nouts': [len(layer.neurons) for layer in self.layers],
                'activation': self.activation, 'fused': self.layers[0].neurons[0].fused}

    @staticmethod
    def count_parameters(nin=None, nouts=None, activation='relu', fused=True, **rest):
        """How many parameters MLP(**config) has; ValueError for a bad config."""
        if rest:
            raise ValueError(f"unknown settings {sorted(rest)}")
        return _check_config(nin, nouts, activation, fused)

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(W, b), ...] per layer as numpy arrays, W of shape (nout, nin)."""
        return [(np.array([[w.data for w in n.w] for n in layer.neurons]),
                 np.array([n.b.data for n in layer.neurons])) for layer in self.layers]

    def to_torch(self) -> Any:
        """An equivalent float64 torch.nn.Sequential carrying the same weights."""
        import torch
        modules = []
        act = {'relu': torch.nn.ReLU, 'tanh': torch.nn.Tanh, 'sigmoid': torch.nn.Sigmoid,
               'gelu': torch.nn.GELU, 'gelu_tanh': lambda: torch.nn.GELU(approximate='tanh'),
               'silu': torch.nn.SiLU, 'softplus': torch.nn.Softplus,
               'leaky_relu': torch.nn.LeakyReLU}
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
