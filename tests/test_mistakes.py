"""Natural mistakes get a clear error, never a crash or a silently wrong model; and the
gradients and numbers micrograd and PyTorch compute, cgrad computes too.

Oracles: hand-derived values, micrograd, PyTorch float64 where installed."""
import copy
import gc
import io
import json
import math
import pickle
import random
import weakref
import zipfile

import numpy as np
import pytest

import cgrad
from cgrad import Graph, Value, losses, nn
from cgrad.optim import SGD, Adam


# ---- a model fed another width ----------------------------------------------------------

@pytest.mark.parametrize("width", [2, 4, 8])
def test_an_mlp_fed_another_width_after_its_first_call_raises(width):
    model = nn.MLP(3, [4, 2])
    model([1.0, 2.0, 3.0])                    # the rows are built and cached
    with pytest.raises(ValueError, match="this neuron takes 3 inputs, got"):
        model([0.5] * width)
    out = model([1.0, 2.0, 3.0])              # and it still works
    assert len(out) == 2


def test_recording_a_graph_over_another_width_raises():
    model = nn.MLP(3, [4, 2])
    model([1.0, 2.0, 3.0])
    xs = cgrad.inputs(2, 5)
    with pytest.raises(ValueError, match="takes 3 inputs"):
        [model(x) for x in xs]


@pytest.mark.parametrize("fused", [True, False])
def test_a_hidden_layer_of_one_neuron_feeds_the_next(fused):
    random.seed(3)
    model = nn.MLP(3, [1, 2], fused=fused)
    x = [0.5, -1.0, 2.0]
    out = model(x)
    (h_neuron,), last = model.layers[0].neurons, model.layers[1].neurons
    h = max(0.0, sum((w.data * xi for w, xi in zip(h_neuron.w, x)), h_neuron.b.data))
    assert [o.data for o in out] == [n.w[0].data * h + n.b.data for n in last]
    sum(out).backward()                                   # and it trains
    assert h_neuron.w[0].grad == (x[0] * sum(n.w[0].data for n in last) if h > 0 else 0.0)
    xs = cgrad.inputs(4, 3)                               # and records
    graph = Graph(cgrad.sum([o * o for xi in xs for o in model(xi)]), inputs=xs)
    assert graph.forward(np.ones((4, 3))) == \
        cgrad.sum([o * o for _ in range(4) for o in model([1.0, 1.0, 1.0])]).data


def test_a_single_value_given_to_a_layer_says_what_to_pass():
    layer, one = nn.Layer(1, 3), nn.Layer(2, 1)(([1.0, 2.0]))
    with pytest.raises(TypeError, match=r"not a single Value .*pass \[value\]"):
        layer(one)
    assert len(layer([one])) == 3
    with pytest.raises(TypeError, match="sum.. must be a list of Values or numbers"):
        cgrad.sum(one)


def test_the_row_cache_is_not_reachable():
    n = nn.Neuron(3)
    n([1.0, 2.0, 3.0])
    with pytest.raises(AttributeError):
        n.w.row
    with pytest.raises(AttributeError):
        n.w.row = Value(1.0)


def test_sorting_the_weights_takes_keywords_and_is_honoured():
    random.seed(0)
    n = nn.Neuron(3, activation='linear')
    x = [1.0, 10.0, 100.0]
    n(x)
    n.w.sort(key=lambda v: v.data, reverse=True)
    expected = sum((wi.data * xi for wi, xi in zip(n.w, x)), n.b.data)
    assert n(x).data == expected


def test_an_mlps_widths_given_as_one_int_say_to_pass_a_list():
    with pytest.raises(TypeError, match=r"list of layer widths, as in MLP\(2, \[16, 16, 1\]\); got int 4"):
        nn.MLP(2, 4)


@pytest.mark.parametrize("nouts", [[0], [3, 0, 1]])
def test_an_mlp_layer_of_no_neurons_is_refused(nouts):
    with pytest.raises(ValueError, match="every layer needs at least one neuron"):
        nn.MLP(2, nouts)
    with pytest.raises(ValueError, match="no config to save"):
        nn.Layer(2, 0).config()   # micrograd's Layer(2, 0) still builds


def test_inputs_of_more_leaves_than_memory_fail_at_once():
    with pytest.raises(MemoryError, match="1,000,000,000,000 leaves"):
        cgrad.inputs(10**6, 10**6)   # not after filling memory
    with pytest.raises(TypeError, match="int sizes"):
        cgrad.inputs(2.0, 3)
    with pytest.raises(ValueError, match="sizes >= 0"):
        cgrad.inputs(2, -3)
    assert [len(row) for row in cgrad.inputs(3, 2)] == [2, 2, 2]


@pytest.mark.parametrize("bad, error, message", [
    (None, TypeError, "input 0 must be an array of real numbers, got NoneType"),
    ("abc", TypeError, "input 0 must be an array of real numbers, got str"),
    ([[1.0, 2.0, "x"]], TypeError, "input 0 must be an array of real numbers, got list"),
    ([[1.0, 2.0, 3.0], [1.0]], ValueError, "input 0: setting an array element"),
])
def test_compile_refuses_input_that_is_not_numbers_before_tracing(bad, error, message):
    model = nn.MLP(3, [2])
    traced = []

    def fn(xs, ys):
        traced.append(len(xs))
        return losses.softmax_cross_entropy([model(x) for x in xs], ys)
    step = cgrad.compile(fn)
    with pytest.raises(error, match=message):
        step.step(bad, np.eye(2)[[0]], optimizer=SGD(model.parameters(), lr=0.1))
    assert traced == [] and step.graphs == {}


# ---- internals replaced through public names ---------------------------------------------

def small_graph(model):
    xs, ys = cgrad.inputs(2, 3), cgrad.inputs(2, 2)
    loss = losses.softmax_cross_entropy([model(x) for x in xs], ys)
    return Graph(loss, inputs=(xs, ys))


DATA = (np.ones((2, 3)), np.eye(2))


def test_an_optimizers_parameters_cannot_be_replaced():
    model = nn.MLP(3, [4, 2])
    opt = Adam(model.parameters())
    with pytest.raises(AttributeError):
        opt.params = None


@pytest.mark.parametrize("broken", [None, "state-less"])
def test_a_graph_step_with_a_broken_optimizer_raises(broken):
    from cgrad._optim import ParameterArray
    model = nn.MLP(3, [4, 2])
    graph = small_graph(model)
    opt = Adam(model.parameters())
    opt._params = None if broken is None else ParameterArray(model.parameters(), 0)
    with pytest.raises((TypeError, ValueError)):
        graph.step(*DATA, optimizer=opt)
    with pytest.raises((TypeError, ValueError, AttributeError)):
        opt.step()


# ---- misuse that would train the wrong thing ----------------------------------------------

def test_inputs_the_loss_never_reads_are_refused():
    model = nn.MLP(3, [4, 2])
    xs, other = cgrad.inputs(2, 3), cgrad.inputs(2, 3)
    loss = cgrad.sum(model(x)[0] for x in xs)
    with pytest.raises(ValueError, match="input 0 .* is not read by the loss"):
        Graph(loss, inputs=other)


def test_class_labels_where_one_hot_rows_were_recorded_say_what_to_pass():
    model = nn.MLP(3, [4, 2])
    xs, ys = cgrad.inputs(2, 3), cgrad.inputs(2, 2)
    graph = Graph(losses.softmax_cross_entropy([model(x) for x in xs], ys), inputs=(xs, ys))
    with pytest.raises(ValueError, match=r"has shape \(2,\).*pass np.eye\(2\)\[labels\]"):
        graph.step(np.ones((2, 3)), np.array([0, 1]), optimizer=SGD(model.parameters()))


def test_a_graph_step_given_the_optimizer_class_says_to_make_one():
    model = nn.MLP(3, [4, 2])
    xs, ys = cgrad.inputs(2, 3), cgrad.inputs(2, 2)
    graph = Graph(losses.softmax_cross_entropy([model(x) for x in xs], ys), inputs=(xs, ys))
    with pytest.raises(TypeError, match=r"not the class Adam.*optimizer=Adam\(model"):
        graph.step(np.ones((2, 3)), np.eye(2), optimizer=Adam)
    with pytest.raises(TypeError, match="input 0 holds Values.*not the leaves"):
        graph.step(xs, np.eye(2), optimizer=Adam(model.parameters()))


def test_several_inputs_given_as_a_list_say_to_use_a_tuple():
    model = nn.MLP(3, [4, 2])
    xs, ys = cgrad.inputs(2, 3), cgrad.inputs(2, 2)
    loss = losses.softmax_cross_entropy([model(x) for x in xs], ys)
    with pytest.raises(ValueError, match=r"ragged.*inputs=\(xs, ys\)"):
        Graph(loss, inputs=[xs, ys])
    assert Graph(loss, inputs=(xs, ys)).input_shapes == ((2, 3), (2, 2))


def test_label_leaves_as_class_indices_say_to_use_one_hot_rows():
    model = nn.MLP(3, [4, 2])
    xs, labels = cgrad.inputs(2, 3), cgrad.inputs(2)
    with pytest.raises(TypeError, match="target is a Value.*one-hot rows"):
        losses.softmax_cross_entropy([model(x) for x in xs], labels)


def test_an_optimizer_over_another_models_parameters_is_refused():
    model, other = nn.MLP(3, [4, 2]), nn.MLP(3, [4, 2])
    graph = small_graph(model)
    with pytest.raises(ValueError, match="none of the optimizer's .* parameters is in"):
        graph.step(*DATA, optimizer=SGD(other.parameters(), lr=0.1))


def test_a_graph_used_after_its_model_changed_is_refused():
    model = nn.MLP(3, [4, 2])
    graph = small_graph(model)
    for neuron in model.layers[0].neurons:          # every first-layer weight replaced
        neuron.w[:] = [Value(0.1) for _ in neuron.w]
    for layer in model.layers:
        for neuron in layer.neurons:
            neuron.b = Value(0.0)
    model.layers[1].neurons = [nn.Neuron(4, activation='linear') for _ in range(2)]
    with pytest.raises(ValueError, match="model changed since the Graph was built"):
        graph.step(*DATA, optimizer=SGD(model.parameters(), lr=0.1))


def test_a_numpy_array_times_a_value_says_what_to_do():
    v = Value(2.0)
    for f in (lambda: np.array([1.0, 2.0]) * v, lambda: v * np.array([1.0, 2.0]),
              lambda: np.array([1.0]) + v):
        with pytest.raises(TypeError, match="element by element"):
            f()
    assert (np.float64(3.0) * v).data == 6.0     # a numpy scalar is a number


def test_mixing_micrographs_values_with_cgrads_says_what_to_do():
    micrograd = pytest.importorskip("micrograd.engine")
    v = Value(2.0)
    for f in (lambda: v + micrograd.Value(1.0), lambda: v * micrograd.Value(1.0)):
        with pytest.raises(TypeError, match="separate engines"):
            f()
    with pytest.raises(TypeError):
        Value(micrograd.Value(1.0))


# ---- gradients -----------------------------------------------------------------------------

def test_zero_grad_drops_grad_value():
    x = Value(1.5)
    model_like = [x]
    for step in range(3):
        for p in model_like:
            p.grad = 0
        (x * x * x).backward(create_graph=True)
        assert x.grad_value.data == 3 * 1.5 ** 2        # this step's, not the sum
    opt = SGD([x], lr=0.1)
    opt.zero_grad()
    assert getattr(x, "grad_value", None) is None


def test_backward_with_create_graph_does_not_leak():
    def one_call():
        x = Value(0.7)
        (x.tanh() * x).backward(create_graph=True)
        return weakref.ref(x)
    refs = [one_call() for _ in range(200)]
    gc.collect()
    assert sum(r() is not None for r in refs) == 0


@pytest.mark.parametrize("replay", [False, True])
def test_a_refused_adam_step_does_not_count(replay):
    random.seed(0)
    model = nn.MLP(3, [4, 2])
    twin = copy.deepcopy(model)
    opt, twin_opt = Adam(model.parameters(), lr=0.01), Adam(twin.parameters(), lr=0.01)
    graph, twin_graph = small_graph(model), small_graph(twin)
    for g, o in ((graph, opt), (twin_graph, twin_opt)):
        (g.step(*DATA, optimizer=o) if replay else eager_step(g, o, model if o is opt else twin))
    opt.lr = 1e308                                  # this one is refused
    with pytest.raises(OverflowError):
        graph.step(*DATA, optimizer=opt) if replay else eager_step(graph, opt, model)
    opt.lr = 0.01
    for g, o, m in ((graph, opt, model), (twin_graph, twin_opt, twin)):
        g.step(*DATA, optimizer=o) if replay else eager_step(g, o, m)
    assert opt.steps == twin_opt.steps == 2
    assert model.get_parameters().tolist() == twin.get_parameters().tolist()


def eager_step(graph, opt, model):
    opt.zero_grad()
    loss = losses.softmax_cross_entropy([model(list(x)) for x in DATA[0]], list(DATA[1]))
    loss.backward()
    opt.step()


def test_log_backward_at_a_subnormal_input():
    x = Value(5e-324)
    (x.log() * 1e-20).backward()
    assert x.grad == 1e-20 / 5e-324 and math.isfinite(x.grad)
    y = Value(0.3)                                 # elsewhere micrograd's (1/a) * g
    (y.log() * 1.7).backward()
    assert y.grad == (1 / 0.3) * 1.7


def test_a_constants_overflowing_gradient_is_not_an_error():
    x = Value(1e200)
    ((x * 1e-200) * 1e200).backward()
    assert x.grad == 1e-200 * 1e200
    x = Value(1e200)                                # the same through replay
    (y,) = cgrad.inputs(1)
    graph = Graph(((x * 1e-200) * 1e200) * y, inputs=[y])
    graph.forward([1.0])
    graph.backward()
    assert x.grad == 1e-200 * 1e200


def test_an_overflowing_gradient_of_a_parameter_still_raises():
    x, w = Value(1e200), Value(1.0)
    with pytest.raises(OverflowError):
        ((x * w) * 1e200).backward()               # w's gradient is x * 1e200


def test_cross_entropy_at_a_minus_infinite_target_logit():
    logits = [Value(float("-inf")), Value(1.0), Value(2.0)]
    loss = losses.cross_entropy(logits, 0)
    loss.backward()
    assert loss.data == float("inf")
    e1, e2 = math.exp(1.0), math.exp(2.0)
    assert [z.grad for z in logits] == pytest.approx([-1.0, e1 / (e1 + e2), e2 / (e1 + e2)],
                                                     rel=1e-15)
    torch = pytest.importorskip("torch")
    t = torch.tensor([float("-inf"), 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    torch.nn.functional.cross_entropy(t[None], torch.tensor([0])).backward()
    assert [z.grad for z in logits] == pytest.approx(t.grad.tolist(), rel=1e-15)


@pytest.mark.parametrize("values", [[float("inf"), 1.0], [1e308, -1e308, 3.0],
                                    [float("-inf"), float("-inf"), 0.0], [-745.0, 0.0]])
def test_cgrad_grad_agrees_with_backward_on_logsumexp(values):
    xs = [Value(v) for v in values]
    out = cgrad.logsumexp(xs) * 0.5
    grads = cgrad.grad(out, xs)
    out.backward()
    assert [g for g in grads] == [x.grad for x in xs]


# ---- copies of subclasses --------------------------------------------------------------------

class Slotted(Value):
    __slots__ = ("tag", "__hidden")

    def __init__(self, data, tag=None):
        super().__init__(data)
        self.tag = tag
        self.__hidden = tag * 2 if tag else None

    def hidden(self):
        return self.__hidden


class Custom(Value):
    def __getstate__(self):
        return {"note": "custom"}

    def __setstate__(self, state):
        self.restored = state


@pytest.mark.parametrize("clone", [lambda v: pickle.loads(pickle.dumps(v)), copy.copy,
                                   copy.deepcopy])
def test_copies_of_subclasses_keep_slots_and_custom_state(clone):
    s = Slotted(2.0, tag="a")
    s.label = "x"
    c = clone(s)
    assert (type(c), c.data, c.tag, c.hidden(), c.label) == (Slotted, 2.0, "a", "aa", "x")
    d = clone(Custom(3.0))
    assert (type(d), d.data, d.restored) == (Custom, 3.0, {"note": "custom"})


# ---- crafted model files ---------------------------------------------------------------------

def npz_with(path, config_bytes, params_bytes, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("config.npy", config_bytes)
        archive.writestr("parameters.npy", params_bytes)


def npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array)
    return buffer.getvalue()


def test_load_refuses_a_deeply_nested_config(tmp_path):
    path = tmp_path / "deep.npz"
    npz_with(path, npy(np.array("[" * 5_000 + "]" * 5_000)), npy(np.zeros(3)))
    with pytest.raises(ValueError, match="not a model file"):
        nn.load(path)


def test_load_refuses_members_compressed_otherwise(tmp_path):
    path = tmp_path / "lzma.npz"
    config = json.dumps({"class": "MLP", "config": {"nin": 1, "nouts": [1]}})
    npz_with(path, npy(np.array(config)), npy(np.zeros(2)), zipfile.ZIP_LZMA)
    with pytest.raises(ValueError, match="not a model file"):
        nn.load(path)


def test_load_bounds_what_a_small_file_may_ask_for(tmp_path):
    """A few kB of compressed zeros asking for a 300,000-parameter model: refused
    before anything is inflated or built."""
    sizes = {"nin": 599, "nouts": [500]}
    path = tmp_path / "small.npz"
    config = json.dumps({"class": "MLP", "config": sizes})
    params = npy(np.zeros(nn.MLP.count_parameters(**sizes)))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("config.npy", npy(np.array(config)))
        archive.writestr("parameters.npy", params)
    assert path.stat().st_size < 10_000
    with pytest.raises(ValueError, match="claims .* bytes from"):
        nn.load(path)


def test_load_takes_a_model_saved_compressed(tmp_path):
    model = nn.MLP(3, [4, 2])
    path = tmp_path / "m.npz"
    config = json.dumps({"class": "MLP", "config": model.config()})
    np.savez_compressed(path, config=np.array(config), parameters=model.get_parameters())
    assert nn.load(path).get_parameters().tolist() == model.get_parameters().tolist()


@pytest.mark.parametrize("flag", ["exact", "input_grads"])
def test_graph_flags_take_booleans_only(flag):
    model = nn.MLP(3, [2])
    xs = cgrad.inputs(2, 3)
    for wrong in ("no", "x", None, 2, 0.5):
        with pytest.raises(TypeError, match=f"{flag} must be True or False"):
            Graph(inputs=xs, outputs=[model(x) for x in xs], **{flag: wrong})
    for fine in (False, 0, np.True_):
        graph = Graph(inputs=xs, outputs=[model(x) for x in xs], **{flag: fine})
        assert graph.forward(np.ones((2, 3))).shape == (2, 2)
