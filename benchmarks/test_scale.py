"""Replay at scale under pytest-benchmark: one training step per round, every engine on
the same weights and data (`pytest benchmarks/test_scale.py --benchmark-only`).
`python -m cgrad bench --scale` runs the same steps interleaved, with setup and memory."""
import pytest

from cgrad.cli import scale

ENGINES = [e for e in scale.ENGINES if scale.available(e)]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("workload", scale.WORKLOADS, ids=[w[0] for w in scale.WORKLOADS])
def test_training_step(benchmark, workload, engine):
    if engine.startswith("torch"):
        import torch
        scale.DEFAULT_TORCH_THREADS = scale.DEFAULT_TORCH_THREADS or torch.get_num_threads()
    step, _, _ = scale.make_step(engine, workload)
    benchmark.group = workload[0]
    benchmark.extra_info.update(engine=engine, flops=scale.flops(*workload[1:4]))
    benchmark.pedantic(step, setup=lambda: scale.threads(engine), rounds=7, warmup_rounds=1)
