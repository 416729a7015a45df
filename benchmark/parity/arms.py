"""The arms of the parity tools: how an arm is named, which backend module it loads, and
its trainer built without any data.

Arms are named as in the analysis (benchmark.spec.runkey.arm_name): "pytorch", "keras",
"keras/jax", ...: the framework, then the engine when it is not the default. Keras binds
one engine per process, so an arm of Keras on another engine than its default is built in
a process of its own (benchmark.parity.recorded); this module decides which.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmark.backends import load_backend
from benchmark.backends.contract import AuditBackend, Introspection, ModelRegistry
from benchmark.spec.frameworks import default_engine
from benchmark.spec.schedule import Schedule

# the framework that shares the audit's process on its default engine only
ONE_ENGINE_PER_PROCESS = ("keras",)
# trainers never write at construction, but take a checkpoint directory
UNUSED_CHECKPOINTS = Path(tempfile.gettempdir()) / "benchmark-parity-unused"


def arm_spec(arm: str) -> tuple[str, str | None]:
    """(framework, engine) of an arm name ("keras/jax" -> ("keras", "jax"); "keras" -> ("keras", None))."""
    framework, _, engine = arm.partition("/")
    return framework, engine or None


def arm_models(arm: str) -> ModelRegistry:
    """The backend module of an arm, as the numerical-equivalence check uses it."""
    return load_backend(*arm_spec(arm))


def needs_own_process(arm: str) -> bool:
    """An arm whose framework binds one engine per process, on another than its default."""
    framework, engine = arm_spec(arm)
    return framework in ONE_ENGINE_PER_PROCESS and engine not in (None, default_engine(framework))


class NoData:
    """What a trainer reads from PreparedData at construction, without any images."""

    def __init__(self, cfg):
        ds = cfg.dataset
        self.name, self.num_classes, self.image_size = ds.name, int(ds.num_classes), int(ds.image_size)
        # null constants are taken from the cache at run time, identically by every backend
        self.mean = [float(v) for v in ds.mean] if ds.mean is not None else [0.0, 0.0, 0.0]
        self.std = [float(v) for v in ds.std] if ds.std is not None else [1.0, 1.0, 1.0]

    def split(self, name, limit=None):
        return np.zeros((0, self.image_size, self.image_size, 3), np.uint8), np.zeros((0,), np.int64)


def build_trainer(cfg, schedule: Schedule) -> Introspection:
    """The arm's real trainer for `cfg`, in this process, without data, as the audit reads it."""
    backend: AuditBackend = load_backend(cfg.framework.name, cfg.framework.engine)
    return backend.Trainer(cfg, NoData(cfg), schedule, UNUSED_CHECKPOINTS)
