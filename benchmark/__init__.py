"""Keras 3 (TensorFlow, JAX, PyTorch engines) vs PyTorch image-classification benchmark.

Framework-neutral modules (config, data, schedule, metrics, rundir, environment,
engine) never import torch or tensorflow at module level; each backend lives in
``benchmark.backends.<name>`` and is imported only when selected.
"""

__version__ = "0.1.0"


class BenchmarkError(Exception):
    """A user-facing problem (bad input, missing file): reported as one line, exit 2."""


class OtherRunError(BenchmarkError):
    """The run directory must be left as it is (it holds another run, or another
    process trains it): reported, and its files left alone."""


class DamagedRunError(OtherRunError):
    """A run directory whose files are unreadable or disagree (a history shorter than
    its checkpoint): refused before any training, nothing in it overwritten."""
