"""Build of the optional compiled kernels of the sparse executor (everything else is in pyproject.toml).

The kernels are plain C over float buffers, loaded at run time with ctypes (adafuse.inference.kernels): no
Python or PyTorch headers are needed. If the compiler is missing or fails, the package installs without them
and the executor uses its PyTorch path (``optional=True``).
"""

import sys

from setuptools import Extension, setup

flags = [] if sys.platform == "win32" else ["-O3", "-std=c11", "-fno-strict-aliasing"]

setup(
    ext_modules=[
        Extension(
            "adafuse.inference._sparse_kernels",
            sources=["src/adafuse/inference/csrc/sparse_kernels.c"],
            extra_compile_args=flags,
            optional=True,
        )
    ]
)
