"""cgrad.gpt replayed (cgrad.compile: one Graph per document length) on documents of
one length, and on documents as they come (a new length most steps, so each step
takes the parameters from the previous length's graph).  Made-up names, microgpt's
seed and Adam, n_embd 16 and 64; the median ms per step over rounds of 60 documents,
after every length has been recorded.  Also the layers each recorded step runs, and
the resident memory the recorded graphs added (each holds its eager graph and plan).

    python benchmarks/gpt_lengths.py
"""
import random
import statistics
import time

import cgrad
from cgrad.cli.scale import resident_bytes
from cgrad.datasets import make_names
from cgrad.gpt import MicroGPT, document_arrays, tokenizer
from cgrad.optim import Adam


def main(rounds=5):
    for n_embd in (16, 64):
        docs = make_names(2000)
        random.seed(42)
        random.shuffle(docs)
        uchars, bos, vocab = tokenizer(docs)
        model = MicroGPT(vocab, n_embd, n_embd, 1, 4)
        opt = Adam(model.params, lr=0.01, betas=(0.85, 0.99), eps=1e-8)
        step = cgrad.compile(model.loss, input_grads=False)
        arrays = [document_arrays(d, uchars, bos, n_embd) for d in docs[:400]]
        before = resident_bytes()
        for X, Y in arrays:                           # every length recorded
            step.step(X, Y, optimizer=opt)
        grown = resident_bytes() - before
        one_length = [a for a in arrays if len(a[0]) == 7][:60]
        as_they_come = arrays[:60]
        times = {"one length (7 tokens)": [], "as they come": []}
        for _ in range(rounds):
            for name, docs_ in (("one length (7 tokens)", one_length),
                                ("as they come", as_they_come)):
                marks = []
                for X, Y in docs_:
                    t0 = time.perf_counter()
                    step.step(X, Y, optimizer=opt)
                    marks.append(time.perf_counter() - t0)
                times[name].append(statistics.median(marks))
        layers = sorted({g.n_layers for g in step.graphs.values()})
        print(f"n_embd {n_embd}: " + ", ".join(
            f"{name} {1e3 * statistics.median(t):.3f} ms" for name, t in times.items())
            + f"; layers per recorded step: {layers}; {len(step.graphs)} graphs, "
            f"+{grown / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
