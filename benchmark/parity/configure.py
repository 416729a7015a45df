"""The audit's configuration: the real Hydra config, and the schedule without the data.

The audit needs no dataset files: only the class count, the input size and the shape of
the LR schedule, which depends on the number of training images. That number comes,
in this order, from

1. the prepared cache's ``meta.json`` when the dataset is already prepared;
2. :data:`NOMINAL_TRAIN_IMAGES`, the size of the official training set (docs/protocol.md §3), minus
   ``dataset.val_size``;
3. otherwise the dataset is prepared (digits: scikit-learn's bundled copy, offline).

``limit.train`` applies on top, exactly as in a run (benchmark.run.loop).
"""

from __future__ import annotations

import json

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmark import BenchmarkError
from benchmark.data import prepare_dataset
from benchmark.data.cache import cache_dir
from benchmark.run.loop import validate
from benchmark.spec.config import CONF_DIR, hydra_error_line, register_configs
from benchmark.spec.schedule import Schedule, make_schedule

# Official training-set sizes (docs/protocol.md §3); the validation split is held out of these.
NOMINAL_TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "tiny_imagenet": 100_000}


def compose_config(overrides: list[str]):
    """The config a run with these overrides would get (Hydra's compose API, the real conf/)."""
    register_configs()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=list(overrides))
        # reading every value resolves interpolations and type-checks them now
        OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # hydra/omegaconf: unknown key or option, wrong type, bad syntax
        raise BenchmarkError(f"bad override: {hydra_error_line(exc)}") from None
    validate(cfg)
    return cfg


def train_images(cfg) -> tuple[int, str]:
    """Training images of one epoch under `cfg` and where that number came from."""
    ds = cfg.dataset
    meta_path = cache_dir(ds, cfg.data_dir) / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        n, source = int(meta["sizes"]["train"]), f"prepared cache {meta_path.parent}"
    elif ds.name in NOMINAL_TRAIN_IMAGES:
        total = NOMINAL_TRAIN_IMAGES[ds.name]
        n, source = total - int(ds.val_size), f"nominal: {total:,} official training images - {ds.val_size:,} val"
    else:
        data = prepare_dataset(ds, cfg.data_dir)
        n, source = len(data.train_idx), f"prepared cache {cache_dir(ds, cfg.data_dir)}"
    if cfg.limit.train is not None and cfg.limit.train < n:
        n, source = int(cfg.limit.train), f"limit.train={cfg.limit.train}"
    return n, source


def audit_schedule(cfg) -> tuple[Schedule, int, str]:
    n, source = train_images(cfg)
    return make_schedule(cfg, n), n, source
