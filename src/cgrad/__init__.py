"""cgrad: micrograd's scalar autograd engine, with its graph in C."""
from cgrad._core import Value, dot, linear, logsumexp, vsum as sum
from cgrad.autograd import grad, hessian, hvp
from cgrad._version import __version__
from cgrad.gradcheck import GradcheckError, gradcheck

__all__ = ["Value", "dot", "linear", "sum", "logsumexp", "Graph", "BatchTemplate", "inputs", "compile",
           "gradcheck", "GradcheckError", "grad", "hessian", "hvp", "sweep", "__version__"]


def __getattr__(name):
    # Replay needs numpy; `import cgrad.engine` (micrograd's Value alone) does not.
    if name in ("Graph", "BatchTemplate", "inputs"):
        from cgrad import _replay
        return getattr(_replay, name)
    if name == "compile":
        from cgrad.compiled import compile
        return compile
    if name == "sweep":
        from cgrad.sweeps import sweep
        return sweep
    raise AttributeError(f"module 'cgrad' has no attribute {name!r}")
