"""cgrad: micrograd's scalar autograd engine, with its graph in C."""
from cgrad._core import Value, dot, vsum as sum

__all__ = ["Value", "dot", "sum"]
__version__ = "0.1.0"
