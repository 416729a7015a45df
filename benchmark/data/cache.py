"""Prepare a dataset once into a framework-neutral uint8 cache with fixed split indices.

Layout of ``<data_dir>/cache/<name>/``::

    train_x.npy train_y.npy   full official training set, uint8 NHWC / int64
    test_x.npy  test_y.npy    official test set (digits: a stratified hold-out)
    train_idx.npy val_idx.npy fixed stratified split of the training set (seed 42)
    meta.json                 source, sizes, train-split mean/std, fingerprint

The folder is built under a temporary name and renamed into place, so a cache
either exists whole or not at all.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark import BenchmarkError
from benchmark.data import sources
from benchmark.data.normalization import channel_stats
from benchmark.data.splits import SPLIT_SEED, stratified_holdout
from benchmark.files import (
    atomic_write_text,
    new_private_dir,
    open_lock,
    redact_url,
    refuse_links_out,
    remove,
    set_mode,
    umask,
)

log = logging.getLogger(__name__)
CACHE_VERSION = 1
FINGERPRINT_ORDER = ("train_x", "train_y", "test_x", "test_y", "train_idx", "val_idx")
STATS_TOLERANCE = 2e-3  # config constants vs statistics recomputed from the cache


@dataclass
class PreparedData:
    name: str
    num_classes: int
    image_size: int
    train_x: np.ndarray  # full training set; index it with train_idx / val_idx
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    mean: list[float]
    std: list[float]
    source: str = ""  # where the cache was prepared from (meta.json)
    fingerprint: str = ""  # of images, labels and split indices (data_fingerprint)

    def split(self, name: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """In-memory (images, labels) of 'train', 'val' or 'test', optionally the first `limit`."""
        if name == "test":
            stop = len(self.test_y) if limit is None else limit
            return np.array(self.test_x[:stop]), np.array(self.test_y[:stop])
        idx = {"train": self.train_idx, "val": self.val_idx}[name][:limit]
        return self.train_x[idx], self.train_y[idx]


def data_fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """``sha256:`` and the first 16 hex digits of the SHA-256 of every image, label and
    split index, in a fixed order (the prefix keeps CSV readers from taking it for a number).

    Two caches with the same fingerprint give every run the same samples in the same
    splits. The zip and the parquet mirror of Tiny-ImageNet order their images
    differently, so caches built from them differ (and so do their splits): the
    fingerprint, written into each run's summary.json, lets the analysis flag a sweep
    whose runs of one dataset saw different data.
    """
    digest = hashlib.sha256()
    for key in FINGERPRINT_ORDER:
        arr = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{arr.dtype.str}:{arr.shape};".encode())
        digest.update(arr.tobytes())
    return "sha256:" + digest.hexdigest()[:16]


def _add_fingerprint(target: Path, meta: dict) -> dict:
    """Fingerprint a cache prepared before fingerprints existed, in place: its arrays
    are valid, and rebuilding could need a raw archive that is gone."""
    meta = {**meta, "fingerprint": data_fingerprint(_load_arrays(target))}
    atomic_write_text(target / "meta.json", json.dumps(meta, indent=2) + "\n")
    return meta


def _locate_source(ds, data_dir: Path) -> Path:
    """The raw data: `dataset.source`, else data_dir/raw/<archive>, else a download."""
    if ds.source:
        path = Path(ds.source).expanduser()
        if not path.exists():
            raise BenchmarkError(
                f"dataset.source={ds.source} does not exist; point it at the {ds.archive or ds.name} file or folder"
            )
        if path.is_file():
            sources.verify_md5(path, ds.md5)
        return path
    if not ds.archive:
        raise BenchmarkError(f"dataset.archive is not set for {ds.name}: name the official file, or set dataset.source")
    raw = data_dir / "raw" / ds.archive
    if raw.exists():
        sources.verify_md5(raw, ds.md5)
        return raw
    hint = f"put {ds.archive} in {raw.parent}/ or set dataset.source=/path/to/{ds.archive} (see docs/running.md)"
    if not ds.url:
        raise BenchmarkError(f"{raw} not found; {hint}")
    log.info("downloading %s to %s", redact_url(ds.url), raw)
    return sources.download(ds.url, raw, ds.md5, hint)


# the datasets _read_raw has a reader for (the run's checks refuse any other name up front)
READERS = ("cifar10", "cifar100", "tiny_imagenet", "digits")


def _read_raw(ds, data_dir: Path) -> sources.RawDataset:
    if ds.name == "digits":
        return sources.read_digits(ds.image_size)
    source = _locate_source(ds, data_dir)
    if ds.name in sources.CIFAR_LAYOUT:
        return sources.read_cifar(source, ds.name)
    if ds.name == "tiny_imagenet":
        if source.is_dir() and any(source.rglob("*.parquet")):
            return sources.read_tiny_imagenet_parquet(source, ds.image_size)
        return sources.read_tiny_imagenet_official(source, ds.image_size)
    raise BenchmarkError(f"dataset {ds.name!r} has no reader; valid: {', '.join(READERS)}")


def _check_raw(raw: sources.RawDataset, ds) -> None:
    for split, x, y in (("train", raw.train_x, raw.train_y), ("test", raw.test_x, raw.test_y)):
        if x.shape[1:] != (ds.image_size, ds.image_size, 3) and len(x):
            raise BenchmarkError(
                f"{raw.description}: {split} images are {x.shape[1:]}, expected {ds.image_size}x{ds.image_size}x3"
            )
        if len(y) and (y.min() < 0 or y.max() >= ds.num_classes):
            raise BenchmarkError(f"{raw.description}: {split} labels outside 0..{ds.num_classes - 1}")


def _build(ds, data_dir: Path, target: Path) -> None:
    raw = _read_raw(ds, data_dir)
    _check_raw(raw, ds)
    train_x, train_y, test_x, test_y = raw.train_x, raw.train_y, raw.test_x, raw.test_y
    if ds.test_size:  # no official test split (digits)
        keep, held = stratified_holdout(train_y, ds.test_size)
        test_x, test_y = train_x[held], train_y[held]
        train_x, train_y = train_x[keep], train_y[keep]
    if ds.val_size >= len(train_y):
        raise BenchmarkError(f"dataset.val_size={ds.val_size} is not smaller than the {len(train_y)} training images")
    train_idx, val_idx = stratified_holdout(train_y, ds.val_size)
    mean, std = channel_stats(train_x[train_idx])

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_private_dir(target)
    try:
        arrays = dict(
            train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, train_idx=train_idx, val_idx=val_idx
        )
        for key, arr in arrays.items():
            np.save(tmp / f"{key}.npy", np.ascontiguousarray(arr))
        meta = {
            "version": CACHE_VERSION,
            "name": ds.name,
            "source": raw.description,
            "num_classes": ds.num_classes,
            "image_size": ds.image_size,
            "sizes": {"train": len(train_idx), "val": len(val_idx), "test": len(test_y)},
            "split_seed": SPLIT_SEED,
            "train_mean": mean,
            "train_std": std,
            "fingerprint": data_fingerprint(arrays),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        set_mode(tmp, 0o777 & ~umask())  # a lab's shared cache is not private: only now, once it is full
        if target.is_symlink() or target.exists():  # an outdated cache (other version): replace it whole
            remove(target)
        os.rename(tmp, target)
    except BaseException:
        remove(tmp)
        raise
    log.info("prepared %s from %s into %s", ds.name, raw.description, target)


def cache_dir(ds, data_dir: str | Path) -> Path:
    return Path(data_dir) / "cache" / ds.name


def _damaged(target: Path, what: str) -> BenchmarkError:
    return BenchmarkError(f"the cache {target} is damaged ({what}): delete {target} and launch again to rebuild it")


def _lock_file(data_dir: Path, name: str):
    """The open lock file of a dataset's cache, or None where data_dir is read-only
    (a shared, prepared cache mounted read-only: nobody builds there)."""
    locks = data_dir / ".locks"
    try:
        locks.mkdir(parents=True, exist_ok=True)
        refuse_links_out(locks, "the cache's lock folder")
        return open_lock(locks / f"{name}.lock", f"the lock of the {name} cache")
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return None
        raise


def _read_meta(target: Path) -> dict | None:
    path = target / "meta.json"
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _damaged(target, f"meta.json unreadable: {exc.__class__.__name__}") from None
    if not isinstance(meta, dict):
        raise _damaged(target, "meta.json is not a JSON object")
    if meta.get("version") == CACHE_VERSION and not {
        "num_classes",
        "image_size",
        "sizes",
        "train_mean",
        "train_std",
        "source",
    } <= set(meta):
        raise _damaged(target, "meta.json lacks its fields")
    return meta  # another version's cache is rebuilt whole by the caller


def _load_arrays(target: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for key in FINGERPRINT_ORDER:
        try:
            arrays[key] = np.load(target / f"{key}.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:  # missing, truncated, not an .npy file
            raise _damaged(
                target, f"{key}.npy {'missing' if isinstance(exc, FileNotFoundError) else 'unreadable'}"
            ) from None
    return arrays


def prepare_dataset(ds, data_dir: str | Path) -> PreparedData:
    """Load the cache of dataset config `ds`, building it first if needed, and verify
    it: its fingerprint (a SHA-256 over every array) is recomputed and must equal the
    one recorded at preparation, so changed, truncated or missing files are a one-line
    error naming the cache, never a run on damaged data."""
    data_dir = Path(data_dir)
    target = cache_dir(ds, data_dir)
    # a colleague's link in a shared cache would have the build write (and an outdated
    # cache's removal delete) elsewhere; the entry itself may be a link to a prepared cache
    refuse_links_out(target.resolve() if target.is_symlink() else target, "the cache")
    lock = _lock_file(data_dir, ds.name)
    if lock is None:  # read-only: use what is prepared there, or say why not
        meta = _read_meta(target)
        if meta is None or meta.get("version") != CACHE_VERSION:
            raise BenchmarkError(
                f"data_dir={data_dir} is read-only and holds no prepared {ds.name} cache; prepare it "
                f"once with write access (python -m benchmark dataset={ds.name} epochs=1 "
                f"data_dir={data_dir}) or set data_dir= to a writable directory"
            )
    else:
        # The runs of a sweep start together (SLURM array): one builds, the others wait
        # on the lock and then read what it built.
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            meta = _read_meta(target)
            if meta is None or meta.get("version") != CACHE_VERSION:
                _build(ds, data_dir, target)
                meta = _read_meta(target)
                if meta is None:  # _build writes meta.json last, or raises
                    raise _damaged(target, "meta.json missing right after it was prepared")
            elif "fingerprint" not in meta:
                meta = _add_fingerprint(target, meta)
    arrays = _load_arrays(target)
    found = data_fingerprint(arrays)
    if found != meta.get("fingerprint", found):
        raise _damaged(
            target, f"its arrays hash to {found}, not to {meta['fingerprint']} recorded when it was prepared"
        )
    if (
        meta["num_classes"] != ds.num_classes
        or meta["image_size"] != ds.image_size
        or meta["sizes"]["val"] != ds.val_size
    ):
        raise BenchmarkError(
            f"the cache {target} was built with other settings (classes, size or val_size); delete it to rebuild"
        )
    mean, std = meta["train_mean"], meta["train_std"]
    if ds.mean is not None or ds.std is not None:
        if ds.mean is None or ds.std is None or len(ds.mean) != 3 or len(ds.std) != 3:
            raise BenchmarkError(
                f"dataset.mean/std must both be 3 numbers or both null, got {ds.mean}/{ds.std}; "
                f"the train-split statistics of {target} are {[round(v, 4) for v in mean]}/"
                f"{[round(v, 4) for v in std]}: put these in conf/dataset/{ds.name}.yaml"
            )
        configured = np.asarray([list(ds.mean), list(ds.std)], dtype=np.float64)
        if configured.shape != (2, 3) or np.abs(configured - np.asarray([mean, std])).max() > STATS_TOLERANCE:
            raise BenchmarkError(
                f"dataset.mean/std {list(ds.mean or [])}/{list(ds.std or [])} differ from the train-split statistics "
                f"of {target} ({[round(v, 4) for v in mean]}/{[round(v, 4) for v in std]}); "
                f"put these in conf/dataset/{ds.name}.yaml"
            )
        mean, std = [float(v) for v in ds.mean], [float(v) for v in ds.std]
    return PreparedData(
        name=ds.name,
        num_classes=ds.num_classes,
        image_size=ds.image_size,
        train_x=arrays["train_x"],
        train_y=arrays["train_y"],
        test_x=arrays["test_x"],
        test_y=arrays["test_y"],
        train_idx=np.array(arrays["train_idx"]),
        val_idx=np.array(arrays["val_idx"]),
        mean=mean,
        std=std,
        source=meta["source"],
        fingerprint=found,
    )
