from typing import Any

from cgrad._core import Value

def _gradients(outputs: list[Value], seeds: list[Value],
               inputs: list[Value] | None) -> list[Any]: ...
