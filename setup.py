import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-add, so every result rounds exactly as
# micrograd's Python float arithmetic does.  -fno-math-errno: sqrt is the instruction
# (correctly rounded either way), so loops over it vectorize; nothing reads errno.
FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-Wall", "-Wextra", "-pthread"]
LINK = ["-pthread"]
MACROS = []
# CGRAD_SANITIZE=1: AddressSanitizer and UBSan, and neither free lists nor slabs for
# Values, so that a Value used after it was freed is reported instead of being quietly
# reused.
if os.environ.get("CGRAD_SANITIZE") == "1":
    FLAGS = ["-O1", "-g", "-ffp-contract=off", "-fno-omit-frame-pointer",
             "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-pthread"]
    LINK = ["-fsanitize=address,undefined", "-pthread"]
    MACROS = [("CYTHON_USE_FREELISTS", "0"), ("CGRAD_NO_SLABS", "1")]
HEADERS = ["csrc/cgrad.h", "csrc/ops.h", "csrc/slab.h", "csrc/plan.h", "csrc/layer_kernels.h",
           "csrc/cpu.h", "csrc/threads.h",
           "src/cgrad/_core.pxd"]


def extension(name, *sources):
    return Extension(f"cgrad.{name}", sources=[f"src/cgrad/{name}.pyx", *sources],
                     include_dirs=["csrc"], depends=HEADERS, extra_compile_args=FLAGS,
                     extra_link_args=LINK, define_macros=MACROS)


extensions = [
    extension("_core", "csrc/graph.c", "csrc/slab.c"),
    extension("_replay", "csrc/replay.c", "csrc/layers.c", "csrc/layer_kernels.c",
              "csrc/threads.c", "csrc/optim.c"),
    extension("_optim", "csrc/optim.c"),
    extension("_autograd"),
]

setup(ext_modules=cythonize(extensions, include_path=["src"],
                            compiler_directives={"language_level": 3}))
