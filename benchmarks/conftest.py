import pytest

from cgrad.cli.benchmarking import Unsupported, time_once


@pytest.fixture
def run_workload(benchmark):
    """Benchmark workload.prepare(engine, size) under the engine's GC setting, grouped by
    workload so every engine's figure sits in one table; an engine that cannot run the
    workload is skipped with the reason (shown by `-rs`)."""
    def run(workload, engine, size):
        try:
            fn, units = workload.prepare(engine, size)
            time_once(fn, engine)   # micrograd's recursive sort may fail only when run
        except Unsupported as why:
            pytest.skip(f"{engine} cannot run '{workload.key}': {why}")
        except RecursionError:
            pytest.skip(f"{engine} cannot run '{workload.key}': its recursive "
                        f"topological sort passes Python's recursion limit")
        benchmark.group = workload.key
        benchmark.extra_info.update(engine=engine, units=units, unit=workload.unit)
        benchmark.pedantic(time_once, args=(fn, engine), rounds=5, iterations=1,
                           warmup_rounds=1)
    return run
