"""cgrad.nn against micrograd's nn, plus what cgrad adds (activations, files, torch)."""
import copy
import pickle
import random

import numpy as np
import pytest

from cgrad import Value, nn, reference
from cgrad.cli.steps import micrograd_step, moons

micrograd_nn = pytest.importorskip("micrograd.nn")
micrograd_engine = pytest.importorskip("micrograd.engine")


def test_same_seed_gives_micrograds_model_and_reprs():
    random.seed(1337)
    ours = nn.MLP(2, [16, 16, 1])
    random.seed(1337)
    theirs = micrograd_nn.MLP(2, [16, 16, 1])
    assert [p.data for p in ours.parameters()] == [float(p.data) for p in theirs.parameters()]
    assert repr(ours) == repr(theirs)
    assert repr(nn.Neuron(3, nonlin=False)) == "LinearNeuron(3)"


def test_a_generator_of_its_own_gives_the_seeded_modules_draws():
    random.seed(5)
    before = random.random()
    random.seed(1337)
    theirs = micrograd_nn.MLP(2, [16, 16, 1])
    random.seed(5)
    ours = nn.MLP(2, [16, 16, 1], rng=random.Random(1337))
    assert [p.data for p in ours.parameters()] == [float(p.data) for p in theirs.parameters()]
    assert random.random() == before                 # the module's stream is not touched
    layer = nn.Layer(3, 2, rng=random.Random(9))
    assert [p.data for p in layer.parameters()] == \
        [p.data for p in nn.Layer(3, 2, rng=random.Random(9)).parameters()]


@pytest.mark.parametrize("fused", [True, False])
def test_loss_curve_equals_micrograds_for_3_steps(fused):
    X, y = moons()
    random.seed(1337)
    ours = nn.MLP(2, [16, 16, 1], fused=fused)
    random.seed(1337)
    theirs = micrograd_nn.MLP(2, [16, 16, 1])
    for k in range(3):   # each step reads the last one's update: three show the curve
        a, acc_a = micrograd_step(ours, X, y, k, 100, Value=Value)
        b, acc_b = micrograd_step(theirs, X, y, k, 100, Value=micrograd_engine.Value)
        assert a == pytest.approx(b, rel=1e-12, abs=1e-12) and acc_a == acc_b


def test_fused_neuron_equals_unfused_bit_for_bit():
    random.seed(3)
    fused = nn.Neuron(5, activation='tanh')
    random.seed(3)
    plain = nn.Neuron(5, activation='tanh', fused=False)
    x = [0.3, -1.2, 2.0, 0.7, -0.1]
    a, b = fused(x), plain(x)
    assert a.data == b.data
    a.backward(), b.backward()
    assert [p.grad for p in fused.parameters()] == [p.grad for p in plain.parameters()]


@pytest.mark.parametrize("activation", nn.ACTIVATIONS)
def test_activations_match_the_reference(activation):
    random.seed(5)
    ours = nn.MLP(3, [4, 2], activation=activation)
    random.seed(5)
    ref = nn.MLP(3, [4, 2], activation=activation, value_type=reference.Value)
    x = [0.5, -0.25, 1.5]
    for a, b in zip(ours(x), ref(x)):
        assert a.data == pytest.approx(b.data, rel=1e-15)


def test_wrong_input_length_and_unknown_activation_raise():
    with pytest.raises(ValueError, match="takes 3 inputs, got 2"):
        nn.Neuron(3)([1.0, 2.0])
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        nn.MLP(2, [3, 1], activation='swish')


def test_parameters_as_numpy_round_trip():
    model = nn.MLP(3, [4, 2])
    values = model.get_parameters()
    assert values.shape == (len(model.parameters()),)
    model.set_parameters(values * 2)
    assert np.array_equal(model.get_parameters(), values * 2)
    with pytest.raises(ValueError, match="has 26 parameters"):
        model.set_parameters(values[:-1])
    W, b = model.weights()[0]
    assert W.shape == (4, 3) and b.shape == (4,)


def test_save_load_pickle_deepcopy_round_trips(tmp_path):
    model = nn.MLP(3, [4, 4, 2], activation='tanh')
    x = [0.1, 0.2, -0.3]
    expected = [v.data for v in model(x)]
    path = tmp_path / "model.npz"
    model.save(path)
    clones = [nn.load(path), pickle.loads(pickle.dumps(model)), copy.deepcopy(model)]
    for clone in clones:
        assert repr(clone) == repr(model)
        assert [v.data for v in clone(x)] == expected
        clone.parameters()[0].data += 1  # independent of the original
    assert [v.data for v in model(x)] == expected


def test_unreadable_model_file_raises(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a model file saved by cgrad"):
        nn.load(bad)
    with pytest.raises(ValueError, match="not a model file"):
        nn.load(tmp_path / "missing.npz")


def test_to_torch_gives_the_same_outputs():
    torch = pytest.importorskip("torch")
    model = nn.MLP(3, [5, 4, 2], activation='tanh')
    x = [0.3, -0.6, 0.9]
    ours = [v.data for v in model(x)]
    theirs = model.to_torch()(torch.tensor(x, dtype=torch.float64)).tolist()
    assert theirs == pytest.approx(ours, rel=1e-12)


@pytest.mark.parametrize("make, error", [
    (lambda: nn.MLP(-1, [2]), ValueError), (lambda: nn.MLP(2, [4, -3]), ValueError),
    (lambda: nn.Neuron(2.5), TypeError), (lambda: nn.Layer(2, '3'), TypeError),
])
def test_sizes_must_be_whole_numbers_at_least_zero(make, error):
    with pytest.raises(error, match="must be"):
        make()


def test_a_neuron_draws_as_the_readme_says_and_unfused_as_micrograd():
    micrograd = pytest.importorskip("micrograd.nn")
    from micrograd.engine import Value as MValue
    from cgrad.viz import trace

    def shape(out):
        nodes, _ = trace(out)
        return len(nodes), sum(1 for v in nodes if v._prev)
    n = nn.Neuron(2)
    assert shape(n([Value(1.0), Value(-2.0)])) == (7, 2)           # one dot node
    n.fused = False
    assert shape(n([Value(1.0), Value(-2.0)])) == (10, 5)
    assert shape(micrograd.Neuron(2)([MValue(1.0), MValue(-2.0)])) == (10, 5)


def test_a_layer_hands_the_core_plain_data_and_follows_its_neurons():
    from cgrad._core import fused_layer
    import cgrad
    layer = nn.Layer(3, 2)
    x = [0.5, -1.0, 2.0]
    want = [cgrad.dot(n.w, x, n.b).relu().data for n in layer.neurons]
    assert [v.data for v in layer(x)] == want
    n0 = layer.neurons[0]
    n0.activation = 'tanh'                      # changes are seen: no stale copy
    n0.b = Value(0.25)
    assert layer(x)[0].data == cgrad.dot(n0.w, x, n0.b).tanh().data

    class Doubled(nn.Neuron):                   # a subclass's own __call__ is honoured
        def __call__(self, x):
            return super().__call__(x) * 2
    layer.neurons[1] = Doubled(3)
    n1 = layer.neurons[1]
    assert layer(x)[1].data == cgrad.dot(n1.w, x, n1.b).relu().data * 2
    # the core's entry point itself: plain data, no nn
    w = [Value(0.1), Value(0.2)]
    (out,) = fused_layer([(w, Value(0.3), 'sigmoid')], [1.0, 2.0])
    assert out.data == cgrad.dot(w, [1.0, 2.0], 0.3).sigmoid().data
    with pytest.raises(ValueError, match="unknown activation"):
        fused_layer([(w, Value(0.3), 'swish')], [1.0, 2.0])
    with pytest.raises(ValueError, match="weights, bias, activation"):
        fused_layer([(w, Value(0.3))], [1.0, 2.0])
