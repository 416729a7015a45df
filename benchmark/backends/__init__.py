"""Backend registry and the small interface every backend implements.

A backend is a subpackage ``benchmark.backends.<name>`` exposing:

- ``build_model(model_name, num_classes, image_size)`` -> the framework's model
- ``environment()`` -> dict of framework/accelerator versions for env.json
- ``Trainer(cfg, data, schedule, checkpoint_dir)`` with

  - ``train_epoch(epoch, progress) -> EpochStats`` (one pass, augmentation on)
  - ``predict(images, labels) -> (mean loss, predicted labels)`` (eval mode)
  - ``save(kind, meta)`` / ``restore(kind) -> meta | None`` for the ``best`` and
    ``last`` checkpoints, in the framework's own format. ``last`` holds everything
    needed to resume (model, optimizer, schedule, loss scaler, RNG and data order).
  - ``mode``: the graph/compile mode it runs in (e.g. ``eager``, ``tf.function+xla``)
  - ``peak_memory() -> {"accelerator_peak_bytes": int | None}``

Only the selected backend is imported, so a PyTorch run never imports TensorFlow.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from benchmark import BenchmarkError

BACKENDS = {"pytorch": "benchmark.backends.pytorch", "keras": "benchmark.backends.keras"}

# progress(step, steps, running_mean_loss) is called a few times per epoch.
Progress = Callable[[int, int, float], None]


@dataclass
class EpochStats:
    loss: float  # mean training loss over the epoch's images
    accuracy: float  # training accuracy (augmented images, train mode)
    seconds: float  # training time only, accelerator work included
    images: int  # images trained on
    steps: int  # optimizer steps


def report_every(steps: int, updates: int) -> int:
    """Steps between progress reads, so an epoch reads its running loss from the device
    at most `updates` times (each read waits for the device)."""
    return -(-steps // max(1, updates))


def load_backend(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise BenchmarkError(f"framework={name} is unknown; valid: {', '.join(BACKENDS)}")
    try:
        return importlib.import_module(BACKENDS[name])
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("benchmark"):
            raise BenchmarkError(f"framework={name} is not implemented in this version") from exc
        raise BenchmarkError(f"framework={name} needs {exc.name}, which is not installed (see README: Quick start)") from exc
