"""cgrad: micrograd's scalar autograd engine, with its graph in C."""
from cgrad._core import Value, dot, vsum as sum
from cgrad.gradcheck import GradcheckError, gradcheck

__all__ = ["Value", "dot", "sum", "gradcheck", "GradcheckError"]
__version__ = "0.1.0"
