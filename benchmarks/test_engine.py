"""Engine workloads, every engine on identical work: `pytest benchmarks/ --benchmark-only`.

Each round times one repetition of the workload; divide by extra_info['units'] for the
per-op or per-node figure (`python -m cgrad bench` prints those directly)."""
import pytest

from cgrad.cli.benchmarking import ENGINES, WORKLOADS

TIMED = [w for w in WORKLOADS if w.kind == "time"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("workload", TIMED, ids=[w.key for w in TIMED])
def test_engine_workload(run_workload, workload, engine):
    run_workload(workload, engine, workload.sizes["full"])
