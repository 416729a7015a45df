"""Backend registry: the backends and how one is loaded.

A backend is a subpackage ``benchmark.backends.<name>`` that implements the contract
of :mod:`benchmark.backends.contract` (``Backend`` for the module, ``Trainer`` for its
trainer), and a model registry (``models.create_model(name, num_classes, image_size,
drop_rate=..., drop_path_rate=..., init=..., architecture=...)``) whose aligned
architecture maps every tensor onto torchvision's names and layout
(``canonical_shapes``/``load_canonical``; docs/protocol.md §11). Adding a backend is one entry in BACKENDS and
its subpackage. Only the selected backend is imported, so a PyTorch run never
imports TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import cast

from benchmark import BenchmarkError
from benchmark.backends.contract import Backend, EpochStats, Progress, Trainer

__all__ = ["BACKENDS", "Backend", "EpochStats", "Progress", "Trainer", "load_backend", "report_every"]

BACKENDS = {"pytorch": "benchmark.backends.pytorch", "keras": "benchmark.backends.keras"}


def report_every(steps: int, updates: int) -> int:
    """Steps between progress reads, so an epoch reads its running loss from the device
    at most `updates` times (each read waits for the device)."""
    return -(-steps // max(1, updates))


def load_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise BenchmarkError(f"framework={name} is unknown; valid: {', '.join(BACKENDS)}")
    try:
        module = importlib.import_module(BACKENDS[name])
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("benchmark"):
            raise BenchmarkError(f"framework={name} is not implemented in this version") from exc
        raise BenchmarkError(f"framework={name} needs {exc.name}, which is not installed (see README: Quick start)") from exc
    if not isinstance(module, Backend):  # a backend that forgot part of the contract fails here, not mid-run
        raise BenchmarkError(f"framework={name}: {BACKENDS[name]} does not implement benchmark.backends.contract.Backend")
    return cast(Backend, module)
