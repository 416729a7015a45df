"""Import both frameworks into one process, in the one order that works.

torchvision loads triton, whose bundled LLVM segfaults when TensorFlow's LLVM was
loaded first; loaded first, the two coexist. Every module of the audit that needs a
framework imports it from here.
"""

from __future__ import annotations

import sys

if "tensorflow" in sys.modules and "torchvision" not in sys.modules:
    raise ImportError(
        "benchmark.parity needs torch/torchvision imported before tensorflow "
        "(triton's LLVM crashes after TensorFlow's): import benchmark.parity.frameworks first"
    )

import torch  # noqa: E402
import torchvision  # noqa: E402,F401

import benchmark.backends.keras  # noqa: E402,F401  (pins KERAS_BACKEND=tensorflow, GPU memory growth)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = ["keras", "tf", "torch", "torchvision"]
