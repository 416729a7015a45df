"""Both arms of one configuration, built by the backends without any data, and the audit's row."""

from __future__ import annotations

import contextlib
import copy
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np

from benchmark.parity.frameworks import keras, torch  # torch first, then TensorFlow
from torch import nn

from benchmark.backends.keras import models as kmodels
from benchmark.backends.keras import train as ktrain
from benchmark.backends.pytorch import train as ttrain
from benchmark.schedule import Schedule


@dataclass
class Finding:
    category: str
    item: str
    pytorch: str
    keras: str
    same: bool
    impact: str
    kind: str = "check"  # check: in effect in the benchmark; info: context, not in effect


@dataclass
class Arms:
    """Both arms of one configuration, built by the backends."""

    cfg: object
    schedule: Schedule
    train_images: int
    train_source: str
    torch: object  # benchmark.backends.pytorch.train.Trainer
    keras: object  # benchmark.backends.keras.train.Trainer
    zoo: object  # unmodified keras.applications model (the zoo's own defaults)

    @property
    def name(self) -> str:
        return self.cfg.model.name

    @property
    def size(self) -> int:
        return int(self.cfg.dataset.image_size)

    @property
    def classes(self) -> int:
        return int(self.cfg.dataset.num_classes)

    @property
    def tm(self) -> nn.Module:
        return self.torch.model

    @property
    def km(self):
        return self.keras.model


# ----------------------------------------------------------------- building

class _NoData:
    """What the trainers read from PreparedData at construction, without any images."""

    def __init__(self, cfg):
        ds = cfg.dataset
        self.name, self.num_classes, self.image_size = ds.name, int(ds.num_classes), int(ds.image_size)
        # null constants are taken from the cache at run time, identically by both backends
        self.mean = [float(v) for v in ds.mean] if ds.mean is not None else [0.0, 0.0, 0.0]
        self.std = [float(v) for v in ds.std] if ds.std is not None else [1.0, 1.0, 1.0]

    def split(self, name, limit=None):
        s = self.image_size
        return np.zeros((0, s, s, 3), np.uint8), np.zeros((0,), np.int64)


class _NoBatches:
    """Stands in for the Keras input pipeline, which needs a full epoch of images."""

    def __init__(self, *args, **kwargs):
        self.generator = None


@contextlib.contextmanager
def preserved_global_state():
    """The trainers seed the global RNGs and set process-wide flags: put them back afterwards."""
    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    policy = keras.mixed_precision.global_policy().name
    threads = torch.get_num_threads()
    # The audit's forward passes are tiny; one thread avoids OpenMP barrier stalls when the
    # cores are shared (measured: a ResNet50 forward took 0.05-3 s with 2 threads, 0.12 s with 1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
        keras.mixed_precision.set_global_policy(policy)
        torch.set_num_threads(threads)


def build_arms(cfg, schedule: Schedule, train_images: int, train_source: str) -> Arms:
    run_cfg = copy.deepcopy(cfg)
    # determinism is a property of kernels, not of what is built; leave the process flags alone
    run_cfg.framework.deterministic = False
    data = _NoData(cfg)
    unused = Path(tempfile.gettempdir()) / "benchmark-parity-unused"  # the trainers never write at construction
    torch_trainer = ttrain.Trainer(run_cfg, data, schedule, unused)
    with mock.patch.object(ktrain, "TrainBatches", _NoBatches):
        keras_trainer = ktrain.Trainer(run_cfg, data, schedule, unused)
    zoo = kmodels._zoo(cfg.model.name, data.num_classes, data.image_size)
    return Arms(cfg, schedule, train_images, train_source, torch_trainer, keras_trainer, zoo)
