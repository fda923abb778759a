"""micrograd's module layout: ``from cgrad.engine import Value``."""
from cgrad._core import Value

__all__ = ["Value"]
