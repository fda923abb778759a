"""microgpt the cgrad way: Karpathy's one-layer GPT, trained with graph replay.

The same model, data order, initialisation (microgpt's seed and draw order: the same
starting parameters) and Adam schedule as microgpt (cgrad.programs.microgpt); the model
(cgrad.gpt.MicroGPT) is written with `cgrad.linear`, `cgrad.dot` and `cgrad.logsumexp`,
the update is cgrad's Adam in C, and `cgrad.compile` records the training step once
per document length and replays it in C for every later document of that length.
Tokens enter a recorded step as one-hot rows.  Sampling runs eagerly at the end.

    python examples/microgpt.py --steps 200
    python examples/microgpt.py --eager --steps 20      # no replay: each step rebuilt
    python examples/microgpt.py --json --steps 5        # one JSON object per step
"""
import argparse
import json
import random
import sys
import time

import cgrad
from cgrad.datasets import make_names
from cgrad.gpt import MicroGPT, document_arrays, tokenizer
from cgrad.optim import Adam


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-embd", type=int, default=16)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--n-layer", type=int, default=1)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--docs", metavar="FILE", help="one document per line (default: "
                   "2,000 names made by cgrad.datasets.make_names)")
    p.add_argument("--samples", type=int, default=20, help="names to sample at the end")
    p.add_argument("--json", action="store_true", help="one JSON object per step")
    p.add_argument("--eager", action="store_true", help="no replay: rebuild every step")
    args = p.parse_args(argv)
    if args.n_embd % args.n_head or min(args.n_embd, args.block_size, args.n_layer,
                                        args.n_head, args.steps) < 1:
        p.error("sizes and --steps must be positive, and --n-head must divide --n-embd")
    return args


def main(argv=None):
    args = parse(argv)
    if args.docs:
        with open(args.docs) as f:
            docs = [line.strip() for line in f if line.strip()]
    else:
        docs = make_names(2000)
    random.seed(args.seed)                          # microgpt's draws, in its order
    random.shuffle(docs)
    uchars, bos, vocab_size = tokenizer(docs)
    model = MicroGPT(vocab_size, args.n_embd, args.block_size, args.n_layer, args.n_head)
    optimizer = Adam(model.params, lr=0.01, betas=(0.85, 0.99), eps=1e-8)
    step_fn = cgrad.compile(model.loss, input_grads=False)   # a graph per doc length
    if not args.json:
        print(f"{len(docs)} docs, vocab {vocab_size}, {len(model.params)} parameters, "
              f"{'eager' if args.eager else 'replayed'}")
    t_start = time.perf_counter()
    for step in range(args.steps):
        t0 = time.perf_counter()
        X, Y = document_arrays(docs[step % len(docs)], uchars, bos, args.block_size)
        optimizer.lr = 0.01 * (1 - step / args.steps)  # microgpt's linear decay
        if args.eager:
            optimizer.zero_grad()
            loss = model.loss(X.tolist(), Y.tolist())
            loss.backward()
            optimizer.step()
            loss = loss.data
        else:
            loss = step_fn.step(X, Y, optimizer=optimizer)
        seconds = time.perf_counter() - t0
        if args.json:
            print(json.dumps({"step": step, "loss": loss, "seconds": seconds}), flush=True)
        elif step % max(1, args.steps // 10) == 0 or step == args.steps - 1:
            print(f"step {step + 1:4d} / {args.steps} | loss {loss:.4f}")
    if not args.json:
        total = time.perf_counter() - t_start
        print(f"{args.steps} steps in {total:.2f} s ({total / args.steps * 1e3:.3f} ms per "
              f"step; {len(step_fn.graphs)} document lengths recorded)")
        for i in range(args.samples):
            print(f"sample {i + 1:2d}: {''.join(uchars[t] for t in model.sample(bos))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
