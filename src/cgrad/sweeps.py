"""Train many models at once: one call of a training function per configuration, spread
over processes (joblib) on this machine or over a Dask cluster.

    results = cgrad.sweep(train, [{"lr": 0.01, "width": 32}, {"lr": 0.03, "width": 32}])

is ``[train(lr=0.01, width=32), train(lr=0.03, width=32)]``, computed in parallel.  The
work is joblib's ``Parallel`` (the scikit-learn idiom), so what joblib accepts works
here: ``n_jobs`` as joblib reads it, and Dask through joblib's "dask" backend.  cgrad
adds no scheduler of its own: it only makes what a training run returns (models,
optimizers, Graphs, Values) pickle, and makes the serial run and the parallel one give
the same numbers (each process starts from what the configuration says; seed inside
``train``).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable


def _require(module: str, extra: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ImportError(f"cgrad.sweep needs {module.split('.')[0]}: "
                          f"pip install 'cgrad[{extra}]'") from None


def _call(train: Callable[..., Any], config: Any) -> Any:
    return train(**config) if isinstance(config, dict) else train(config)


@contextlib.contextmanager
def _dask_client(address: str | None, n_jobs: int | None):
    """The client joblib's dask backend talks to: one for `address`, the current one,
    or a LocalCluster of single-threaded worker processes made (and closed) here."""
    distributed = _require("dask.distributed", "dask")
    if address is not None:
        with distributed.Client(address) as client:
            yield client
        return
    try:
        yield distributed.get_client()
        return
    except ValueError:   # no client in this process: make a cluster on this machine
        pass
    workers = n_jobs if n_jobs and n_jobs > 0 else None
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def sweep(train: Callable[..., Any], configs: Iterable[Any], *, n_jobs: int | None = -1,
          backend: str | None = None, address: str | None = None, verbose: int = 0) -> list:
    """``[train(**config) for config in configs]`` (``train(config)`` for a config that
    is not a dict), run in parallel; the results in the order of `configs`.

    ``backend=None`` runs on this machine in joblib's process pool (``n_jobs``: how many
    processes, -1 for one per core, 1 for a plain serial loop in this process).
    ``backend="dask"`` runs on a Dask cluster: the scheduler at `address`
    (``"tcp://host:8786"``), else the Dask client this process already has, else a
    LocalCluster of `n_jobs` single-threaded worker processes made for the call.  Dask
    runs a task again when its worker dies, so a lost worker loses no configuration.

    `train` and every configuration are pickled to the workers (cloudpickle: a function
    defined in a script works) and every result pickled back.  For the serial run's
    numbers, seed inside `train` and draw from generators of its own
    (``nn.MLP(..., rng=random.Random(seed))``, ``np.random.default_rng(seed)``): a Dask
    worker's own threads also draw from the `random` module."""
    configs = list(configs)
    if address is not None and backend != "dask":
        raise ValueError("address names a Dask scheduler: pass backend='dask' with it")
    if backend not in (None, "dask"):
        raise ValueError(f"backend must be None (joblib's processes) or 'dask', "
                         f"got {backend!r}")
    if backend is None and n_jobs == 1:
        return [_call(train, config) for config in configs]    # no joblib needed
    joblib = _require("joblib", "sweep")
    tasks = (joblib.delayed(_call)(train, config) for config in configs)
    if backend is None:
        return joblib.Parallel(n_jobs=n_jobs, verbose=verbose)(tasks)
    with _dask_client(address, n_jobs), joblib.parallel_config(backend="dask"):
        return joblib.Parallel(verbose=verbose)(tasks)
