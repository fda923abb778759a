from Cython.Build import cythonize
from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-add, so every result rounds exactly as
# micrograd's Python float arithmetic does.
FLAGS = ["-O3", "-ffp-contract=off", "-Wall", "-Wextra"]
HEADERS = ["csrc/cgrad.h", "csrc/ops.h", "src/cgrad/_core.pxd"]

extensions = [
    Extension("cgrad._core", sources=["src/cgrad/_core.pyx", "csrc/graph.c"],
              include_dirs=["csrc"], depends=HEADERS, extra_compile_args=FLAGS),
    Extension("cgrad._replay", sources=["src/cgrad/_replay.pyx", "csrc/replay.c"],
              include_dirs=["csrc"], depends=HEADERS,
              extra_compile_args=FLAGS),
    Extension("cgrad._optim", sources=["src/cgrad/_optim.pyx", "csrc/optim.c"],
              include_dirs=["csrc"], depends=HEADERS, extra_compile_args=FLAGS),
]

setup(ext_modules=cythonize(extensions, include_path=["src"],
                            compiler_directives={"language_level": 3}))
