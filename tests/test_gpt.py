"""microgpt written the cgrad way (cgrad.gpt, examples/microgpt.py) against Karpathy's
program (cgrad.programs.microgpt on cgrad.Value, itself bit for bit microgpt's own
Value: tests/test_microgpt.py); and cgrad.compile, a graph per input shape."""
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cgrad
from cgrad import Value, losses, nn
from cgrad.datasets import make_names
from cgrad.gpt import MicroGPT, document_arrays, tokenizer
from cgrad.optim import SGD, Adam
from cgrad.programs.microgpt import run

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "microgpt.py"
SIZES = dict(n_embd=8, n_head=2, block_size=8)


def train_cgrad_way(docs, steps, replay):
    random.seed(42)
    docs = list(docs)
    random.shuffle(docs)
    uchars, bos, vocab = tokenizer(docs)
    model = MicroGPT(vocab, SIZES["n_embd"], SIZES["block_size"], 1, SIZES["n_head"])
    opt = Adam(model.params, lr=0.01, betas=(0.85, 0.99), eps=1e-8)
    step_fn = cgrad.compile(model.loss, input_grads=False)
    out = []
    for k in range(steps):
        X, Y = document_arrays(docs[k % len(docs)], uchars, bos, SIZES["block_size"])
        opt.lr = 0.01 * (1 - k / steps)
        if replay:
            out.append(step_fn.step(X, Y, optimizer=opt))
        else:
            opt.zero_grad()
            loss = model.loss(X.tolist(), Y.tolist())
            loss.backward()
            opt.step()
            out.append(loss.data)
    return out, [p.data for p in model.params], step_fn


@pytest.mark.parametrize("replay", [False, True])
def test_the_cgrad_way_trains_as_microgpt_does(replay):
    docs = make_names(300, seed=5)
    steps = 30
    reference = run(Value, docs, num_steps=steps, num_samples=0, **SIZES)
    losses_, params, step_fn = train_cgrad_way(docs, steps, replay)
    # the same model and updates; the softmax and Adam round differently in the last bit
    assert losses_ == pytest.approx(reference["losses"], rel=1e-12)
    assert params == pytest.approx(reference["params"], rel=1e-9, abs=1e-12)
    if replay:   # a graph per document length met, each recorded once
        random.seed(42)
        shuffled = list(docs)
        random.shuffle(shuffled)
        assert len(step_fn.graphs) == len({min(SIZES["block_size"], len(d) + 1)
                                           for d in shuffled[:steps]})


def test_the_replayed_steps_run_the_matrices_as_layers():
    """Each matrix runs over a document's positions as one product: q and k together,
    v, the attention's output, the MLP's two and the head (6 per layer)."""
    step_fn = train_cgrad_way(make_names(50, seed=7), 4, True)[2]
    assert [g.n_layers for g in step_fn.graphs.values()] == [6] * len(step_fn.graphs)


def test_replayed_and_eager_cgrad_way_agree_bit_for_bit():
    docs = make_names(100, seed=6)
    assert train_cgrad_way(docs, 10, True)[:2] == train_cgrad_way(docs, 10, False)[:2]


PORT_LOSSES = """
import json, random, sys
from cgrad.datasets import make_names
from cgrad.gpt import MicroGPT, document_arrays, tokenizer
from cgrad.cli.microgpt_{framework} import make_step
n_embd, n_head, block_size, steps = {n_embd}, {n_head}, {block_size}, {steps}
docs = make_names(300, seed=5)
random.seed(42)
random.shuffle(docs)
uchars, bos, vocab = tokenizer(docs)
step = make_step(MicroGPT(vocab, n_embd, block_size, 1, n_head), steps)
print(json.dumps([step(k, *document_arrays(docs[k % len(docs)], uchars, bos, block_size))
                  for k in range(steps)]))
"""


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_the_benchmarks_ports_train_as_microgpt_does(framework):
    """bench --microgpt's PyTorch and JAX variants do microgpt's work: the same losses
    (float64; attention over every position at once, so the sums round differently in
    the last bits).  Run in a child process: JAX's threads would make this process's
    later fork() tests unsafe."""
    if importlib.util.find_spec(framework) is None:   # not imported here (see above)
        pytest.skip(f"{framework} is not installed")
    steps = 30
    reference = run(Value, make_names(300, seed=5), num_steps=steps, num_samples=0, **SIZES)
    code = PORT_LOSSES.format(framework=framework, steps=steps, **SIZES)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    losses_ = json.loads(out.strip().splitlines()[-1])
    assert losses_ == pytest.approx(reference["losses"], rel=1e-12)
    assert losses_[-1] < losses_[0]


def test_the_example_runs_and_prints_json_steps():
    out = subprocess.run([sys.executable, str(EXAMPLE), "--json", "--steps", "3",
                          "--n-embd", "8", "--n-head", "2", "--block-size", "8"],
                         capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["loss"] > 0 and r["seconds"] > 0 for r in rows)


def test_the_example_reads_documents_from_a_file(tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("anna\nbob\n\ncarla\n")
    out = subprocess.run([sys.executable, str(EXAMPLE), "--docs", str(docs), "--steps", "2",
                          "--samples", "1", "--n-embd", "4", "--n-head", "1"],
                         capture_output=True, text=True, check=True).stdout
    assert "3 docs, vocab" in out and "sample  1:" in out


# ---- cgrad.compile ---------------------------------------------------------------------

def test_compile_records_once_per_shape_and_equals_rebuilding():
    random.seed(1)
    model, twin = nn.MLP(3, [4, 2]), None
    random.seed(1)
    twin = nn.MLP(3, [4, 2])
    calls = []

    @cgrad.compile
    def step(xs, ys):
        calls.append(len(xs))
        return losses.softmax_cross_entropy([model(x) for x in xs], ys)

    opt, twin_opt = SGD(model.parameters(), lr=0.1), SGD(twin.parameters(), lr=0.1)
    rng = np.random.RandomState(0)
    for n in (4, 4, 3, 4, 3, 1):           # the last partial batch included
        X, Y = rng.uniform(-1, 1, (n, 3)), np.eye(2)[rng.randint(0, 2, n)]
        loss = step.step(X, Y, optimizer=opt)
        twin_opt.zero_grad()
        ref = losses.softmax_cross_entropy([twin(list(x)) for x in X], list(Y))
        ref.backward()
        twin_opt.step()
        assert loss == ref.data
    assert calls == [4, 3, 1]
    assert model.get_parameters().tolist() == twin.get_parameters().tolist()
    assert sorted(step.graphs) == [((1, 3), (1, 2)), ((3, 3), (3, 2)), ((4, 3), (4, 2))]


def test_compile_forward_outputs_and_options():
    model = nn.MLP(2, [3, 1])

    @cgrad.compile(threads=1)
    def predict(xs):
        return None, [model(x) for x in xs]

    X = np.array([[0.5, -1.0], [2.0, 0.25]])
    expected = [model(list(x)).data for x in X]
    assert predict(X).ravel().tolist() == expected
    assert "1 shape(s) recorded" in repr(predict)
    with pytest.raises(TypeError, match="needs a function"):
        cgrad.compile(3)
