"""The commands behind `python -m cgrad` (demo, train, bench) and what they share.

The library is the rest of the package (engine, nn, losses, optim, autograd, viz,
datasets, gradcheck); nothing in it imports from here.

- steps: micrograd's demo (data, model, one training step, eager or the micrograd way),
  shared by the demo, the benchmarks and the tests;
- demo, train: the two training commands;
- benchmarking (workloads, engines, timing), report (`bench`'s table), scale (`bench
  --scale`), layout (`bench --layout`).
"""
