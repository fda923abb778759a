"""cgrad: micrograd's scalar autograd engine, with its graph in C."""
from cgrad._core import Value, dot, logsumexp, vsum as sum
from cgrad._replay import Graph, inputs
from cgrad.gradcheck import GradcheckError, gradcheck

__all__ = ["Value", "dot", "sum", "logsumexp", "Graph", "inputs", "gradcheck",
           "GradcheckError"]
__version__ = "0.1.0"
