from Cython.Build import cythonize
from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-add, so every result rounds exactly as
# micrograd's Python float arithmetic does.
extension = Extension(
    "cgrad._core",
    sources=["src/cgrad/_core.pyx", "csrc/graph.c"],
    include_dirs=["csrc"],
    depends=["csrc/cgrad.h", "csrc/ops.h", "src/cgrad/_core.pxd"],
    extra_compile_args=["-O3", "-ffp-contract=off", "-Wall", "-Wextra"],
)

setup(ext_modules=cythonize([extension], compiler_directives={"language_level": 3}))
