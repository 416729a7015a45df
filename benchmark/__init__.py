"""Keras (TensorFlow) vs PyTorch image-classification benchmark.

Framework-neutral modules (config, data, schedule, metrics, rundir, environment,
engine) never import torch or tensorflow at module level; each backend lives in
``benchmark.backends.<name>`` and is imported only when selected.
"""

__version__ = "0.1.0"


class BenchmarkError(Exception):
    """A user-facing problem (bad input, missing file): reported as one line, exit 2."""


class OtherRunError(BenchmarkError):
    """The run directory holds another run: reported, and that run's files left alone."""
