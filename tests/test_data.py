"""The framework-neutral data layer (docs/protocol.md §3): official formats, cache, splits, stats.

The machine is offline, so every official format is generated small in tmp_path by
tests/formats.py and read by the real loading code; digits is the real dataset.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import formats
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from sklearn.model_selection import train_test_split

from benchmark import BenchmarkError
from benchmark.data import prepare_dataset, sources
from benchmark.data.cache import CACHE_VERSION, cache_dir, data_fingerprint
from benchmark.data.normalization import channel_stats, normalize_reference
from benchmark.data.splits import stratified_holdout
from benchmark.spec.config import DatasetConfig, register_configs

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"
DEAD_URL = "http://127.0.0.1:9/x"  # discard port on loopback: nothing listens, refused at once

# Small sizes of the generated datasets (balanced, so val per class is exact).
SMALL = {
    "cifar10": dict(num_classes=10, image_size=32, crop_padding=4, val_size=30, archive="cifar-10-python.tar.gz"),
    "cifar100": dict(num_classes=100, image_size=32, crop_padding=4, val_size=100, archive="cifar-100-python.tar.gz"),
    "tiny_imagenet": dict(num_classes=4, image_size=64, crop_padding=8, val_size=8, archive="tiny-imagenet-200.zip"),
}


def small_config(name: str, **overrides):
    """A dataset node shaped like the composed config's `dataset`, for generated data."""
    return OmegaConf.structured(DatasetConfig(name=name, epochs=1, **{**SMALL[name], **overrides}))


def composed(dataset: str, data_dir: Path, *overrides: str):
    """The real Hydra config (conf/), as `python -m benchmark` composes it."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"dataset={dataset}", f"data_dir={data_dir}", *overrides])


def assert_one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message, message
    return message


def assert_nothing_cached(data_dir: Path) -> None:
    """No partial cache folder and no temporary directory in <data_dir>/cache."""
    cache = data_dir / "cache"
    leftovers = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
    assert leftovers == [], leftovers


def assert_no_temp_dirs(data_dir: Path) -> None:
    cache = data_dir / "cache"
    hidden = [p.name for p in cache.iterdir() if p.name.startswith(".")] if cache.exists() else []
    assert hidden == [], hidden


def cifar_nhwc(rows: np.ndarray) -> np.ndarray:
    """The official channel-first rows as NHWC, by the documented index formula
    (value of pixel (h, w), channel c is at c*1024 + h*32 + w), not by reshape."""
    h, w, c = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    return rows[:, c * 1024 + h * 32 + w]


def check_split(train_idx: np.ndarray, val_idx: np.ndarray, labels: np.ndarray, val_size: int, num_classes: int):
    n = len(labels)
    assert len(val_idx) == val_size and len(train_idx) == n - val_size
    assert np.intersect1d(train_idx, val_idx).size == 0
    assert np.array_equal(np.union1d(train_idx, val_idx), np.arange(n))
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(val_idx) > 0)
    if np.all(np.bincount(labels, minlength=num_classes) == n // num_classes):  # balanced
        per_class = np.bincount(labels[val_idx], minlength=num_classes)
        assert np.all(per_class == val_size // num_classes), per_class


# ---------------------------------------------------------------- splits


def test_stratified_holdout_balanced():
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 50))
    kept, held = stratified_holdout(labels, 100)
    check_split(kept, held, labels, 100, 10)
    # docs/protocol.md §3: exactly sklearn's train_test_split(stratify=y, random_state=42)
    ref_kept, ref_held = train_test_split(np.arange(500), test_size=100, stratify=labels, random_state=42)
    assert np.array_equal(kept, np.sort(ref_kept)) and np.array_equal(held, np.sort(ref_held))
    again = stratified_holdout(labels, 100)
    assert np.array_equal(again[0], kept) and np.array_equal(again[1], held)


def test_stratified_holdout_unbalanced():
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    kept, held = stratified_holdout(labels, 20)
    check_split(kept, held, labels, 20, 4)
    assert np.array_equal(np.bincount(labels[held]), [8, 6, 4, 2])  # proportional


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_channel_stats_matches_numpy(chunk):
    images = np.random.default_rng(1).integers(0, 256, size=(23, 9, 11, 3), dtype=np.uint8)
    images[..., 2] //= 4  # make the channels differ
    mean, std = channel_stats(images, chunk=chunk)
    scaled = images.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 1, 2)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 1, 2)), rtol=0, atol=1e-9)
    assert all(isinstance(v, float) for v in mean + std)


def test_normalize_reference():
    images = np.array([[[[0, 255, 51]]]], np.uint8)
    out = normalize_reference(images, [0.0, 0.5, 0.2], [1.0, 0.5, 0.1])
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 1.0, 0.0], atol=1e-6)


# ---------------------------------------------------------------- CIFAR readers


@pytest.mark.parametrize("extracted", [False, True], ids=["tar.gz", "folder"])
def test_read_cifar10(tmp_path, extracted):
    exp = formats.make_cifar10(tmp_path, extracted=extracted)
    raw = sources.read_cifar(exp.path, "cifar10")
    assert raw.train_x.shape == (120, 32, 32, 3) and raw.test_x.shape == (20, 32, 32, 3)
    assert raw.train_x.dtype == np.uint8 and raw.train_y.dtype == np.int64
    assert raw.train_x.flags.c_contiguous
    assert np.array_equal(raw.train_y, exp.train_y) and np.array_equal(raw.test_y, exp.test_y)
    # the marker written channel-first at (row 1, column 2) of image 0 of batch 1
    assert raw.train_x[0, 1, 2].tolist() == [200, 100, 50]
    assert raw.test_x[0, 1, 2].tolist() == [200, 100, 50]
    # every pixel, batches concatenated in order 1..5
    assert np.array_equal(raw.train_x, cifar_nhwc(exp.train_rows))
    assert np.array_equal(raw.test_x, cifar_nhwc(exp.test_rows))


@pytest.mark.parametrize("extracted", [False, True], ids=["tar.gz", "folder"])
def test_read_cifar100_uses_fine_labels(tmp_path, extracted):
    exp = formats.make_cifar100(tmp_path, extracted=extracted)
    raw = sources.read_cifar(exp.path, "cifar100")
    assert raw.train_x.shape == (400, 32, 32, 3) and raw.test_x.shape == (100, 32, 32, 3)
    assert raw.train_y.dtype == np.int64 and raw.train_y.max() == 99
    assert np.array_equal(raw.train_y, exp.train_y) and np.array_equal(raw.test_y, exp.test_y)
    assert raw.train_x[0, 1, 2].tolist() == [200, 100, 50]
    assert np.array_equal(raw.train_x, cifar_nhwc(exp.train_rows))
    assert np.array_equal(raw.test_x, cifar_nhwc(exp.test_rows))


def test_read_cifar_folder_itself(tmp_path):
    """dataset.source may also point at cifar-10-batches-py/ itself."""
    exp = formats.make_cifar10(tmp_path, extracted=True)
    raw = sources.read_cifar(exp.path / "cifar-10-batches-py", "cifar10")
    assert np.array_equal(raw.train_y, exp.train_y)


# ---------------------------------------------------------------- Tiny-ImageNet readers


def check_tiny(raw: sources.RawDataset, exp: formats.Expected) -> None:
    for x, y, colors, gray, exp_y in (
        (raw.train_x, raw.train_y, exp.train_colors, exp.train_gray, exp.train_y),
        (raw.test_x, raw.test_y, exp.test_colors, exp.test_gray, exp.test_y),
    ):
        assert x.shape == (len(exp_y), 64, 64, 3) and x.dtype == np.uint8
        assert y.dtype == np.int64 and np.array_equal(y, exp_y)
        assert gray.any()
        for img, color, is_gray in zip(x, colors, gray, strict=True):
            if is_gray:  # grayscale JPEG: three identical channels
                assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
            else:  # JPEG is lossy: the flat class colour within a few levels
                assert np.abs(img.reshape(-1, 3).mean(axis=0) - color).max() < 8, (img.reshape(-1, 3).mean(0), color)


@pytest.mark.parametrize("extracted", [False, True], ids=["zip", "folder"])
def test_read_tiny_imagenet_official(tmp_path, extracted):
    exp = formats.make_tiny_imagenet(tmp_path, extracted=extracted)
    raw = sources.read_tiny_imagenet_official(exp.path, 64)
    check_tiny(raw, exp)
    assert raw.train_x.shape[0] == 24 and raw.test_x.shape[0] == 8


def test_read_tiny_imagenet_parquet(tmp_path):
    exp = formats.make_tiny_imagenet_parquet(tmp_path / "mirror")
    raw = sources.read_tiny_imagenet_parquet(exp.path, 64)
    check_tiny(raw, exp)


def test_tiny_imagenet_wrong_image_size(tmp_path):
    exp = formats.make_tiny_imagenet(tmp_path, image_size=32)
    with pytest.raises(BenchmarkError, match="expected 64x64") as exc:
        sources.read_tiny_imagenet_official(exp.path, 64)
    assert str(exp.path) in assert_one_line(exc)


# ---------------------------------------------------------------- prepare_dataset


def test_cache_without_fingerprint_gets_one_in_place(tmp_path):
    """A cache prepared before fingerprints existed is fingerprinted, not rebuilt: the raw
    archive may be gone (offline clusters)."""
    data_dir = tmp_path / "data"
    exp = formats.make_cifar10(data_dir / "raw")
    ds = small_config("cifar10")
    fingerprint = prepare_dataset(ds, data_dir).fingerprint
    meta_path = cache_dir(ds, data_dir) / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["fingerprint"]
    meta_path.write_text(json.dumps(meta))
    exp.path.unlink()
    data = prepare_dataset(ds, data_dir)
    assert data.fingerprint == fingerprint == json.loads(meta_path.read_text())["fingerprint"]
    assert_no_temp_dirs(data_dir)


def check_prepared(data, exp: formats.Expected, ds, data_dir: Path) -> None:
    n_train = len(exp.train_y)
    assert np.array_equal(data.train_y, exp.train_y) and np.array_equal(data.test_y, exp.test_y)
    check_split(data.train_idx, data.val_idx, np.asarray(data.train_y), ds.val_size, ds.num_classes)
    ref_train, ref_val = stratified_holdout(exp.train_y, ds.val_size)
    assert np.array_equal(data.train_idx, ref_train) and np.array_equal(data.val_idx, ref_val)
    assert data.train_x.shape == (n_train, ds.image_size, ds.image_size, 3) and data.train_x.dtype == np.uint8
    mean, std = channel_stats(np.asarray(data.train_x)[data.train_idx])
    np.testing.assert_allclose(data.mean, mean, atol=1e-12)
    np.testing.assert_allclose(data.std, std, atol=1e-12)
    target = cache_dir(ds, data_dir)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["meta.json", "train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy", "train_idx.npy", "val_idx.npy"]
    )
    meta = json.loads((target / "meta.json").read_text())
    assert meta["sizes"] == {"train": n_train - ds.val_size, "val": ds.val_size, "test": len(exp.test_y)}
    assert meta["split_seed"] == 42
    # the fingerprint covers images, labels and splits: recomputed here, and changed by one pixel
    arrays = {
        k: np.asarray(getattr(data, k)) for k in ("train_x", "train_y", "test_x", "test_y", "train_idx", "val_idx")
    }
    assert data.fingerprint == meta["fingerprint"] == data_fingerprint(arrays)
    assert data.fingerprint.startswith("sha256:") and len(data.fingerprint) == len("sha256:") + 16
    arrays["test_x"] = arrays["test_x"].copy()
    arrays["test_x"][0, 0, 0, 0] ^= 1
    assert data_fingerprint(arrays) != data.fingerprint
    assert data.source == meta["source"] and data.source
    x, y = data.split("val")
    assert np.array_equal(y, exp.train_y[ref_val]) and len(x) == ds.val_size
    x, y = data.split("train", limit=5)
    assert np.array_equal(y, exp.train_y[ref_train[:5]]) and x.shape[0] == 5
    x, y = data.split("test", limit=3)
    assert np.array_equal(y, exp.test_y[:3]) and isinstance(x, np.ndarray) and x.shape[0] == 3
    assert_no_temp_dirs(data_dir)


def test_prepare_cifar10_archive(tmp_path):
    exp = formats.make_cifar10(tmp_path / "dl")
    ds = small_config("cifar10", source=str(exp.path), md5=formats.md5_of(exp.path))
    data = prepare_dataset(ds, tmp_path / "data")
    check_prepared(data, exp, ds, tmp_path / "data")
    assert np.array_equal(data.test_x, cifar_nhwc(exp.test_rows))
    assert np.array_equal(data.train_x, cifar_nhwc(exp.train_rows))


def test_prepare_cifar100_folder(tmp_path):
    exp = formats.make_cifar100(tmp_path / "dl", extracted=True)
    ds = small_config("cifar100", source=str(exp.path))
    data = prepare_dataset(ds, tmp_path / "data")
    check_prepared(data, exp, ds, tmp_path / "data")  # 1 val image per class


def test_prepare_from_raw_dir_with_real_config(tmp_path):
    """The archive in <data_dir>/raw is found; the real config's name/archive are used."""
    data_dir = tmp_path / "data"
    exp = formats.make_cifar10(data_dir / "raw")
    cfg = composed(
        "cifar10",
        data_dir,
        "dataset.val_size=30",
        f"dataset.md5={formats.md5_of(exp.path)}",
        "dataset.mean=null",
        "dataset.std=null",
        "dataset.url=null",
    )
    data = prepare_dataset(cfg.dataset, cfg.data_dir)
    check_prepared(data, exp, cfg.dataset, data_dir)


@pytest.mark.parametrize("kind", ["zip", "folder", "parquet"])
def test_prepare_tiny_imagenet(tmp_path, kind):
    if kind == "parquet":
        exp = formats.make_tiny_imagenet_parquet(tmp_path / "dl")
    else:
        exp = formats.make_tiny_imagenet(tmp_path / "dl", extracted=kind == "folder")
    ds = small_config("tiny_imagenet", source=str(exp.path))
    data = prepare_dataset(ds, tmp_path / "data")
    check_prepared(data, exp, ds, tmp_path / "data")  # 2 val images per class


# ---------------------------------------------------------------- digits (real data)


@pytest.fixture(scope="module")
def digits(data_dir):
    """The real digits dataset in the session's shared data root (tests/conftest.py)."""
    cfg = composed("digits", data_dir)  # mean/std constants of conf/dataset/digits.yaml are checked
    return cfg, prepare_dataset(cfg.dataset, cfg.data_dir)


def test_digits_sizes(digits):
    cfg, data = digits
    assert (len(data.train_idx), len(data.val_idx), len(data.test_y)) == (1257, 180, 360)
    assert data.train_x.shape == (1437, 32, 32, 3) and data.train_x.dtype == np.uint8
    assert data.test_x.shape == (360, 32, 32, 3) and data.test_x.dtype == np.uint8
    check_split(data.train_idx, data.val_idx, np.asarray(data.train_y), 180, 10)
    assert set(np.unique(data.test_y)) == set(range(10))
    x = np.asarray(data.train_x)
    assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2])  # gray
    assert x.max() == 255 and x.min() == 0


def test_digits_stats_match_config(digits):
    cfg, data = digits
    mean, std = channel_stats(np.asarray(data.train_x)[data.train_idx])
    yaml = OmegaConf.load(CONF_DIR / "dataset" / "digits.yaml")
    np.testing.assert_allclose(mean, list(yaml.mean), rtol=0, atol=1e-4)
    np.testing.assert_allclose(std, list(yaml.std), rtol=0, atol=1e-4)
    assert data.mean == [float(v) for v in yaml.mean] and data.std == [float(v) for v in yaml.std]


def test_stats_mismatch_names_config_file(digits, tmp_path):
    cfg, _ = digits
    wrong = composed("digits", cfg.data_dir, "dataset.mean=[0.5,0.5,0.5]")
    with pytest.raises(BenchmarkError, match=r"conf/dataset/digits\.yaml") as exc:
        prepare_dataset(wrong.dataset, wrong.data_dir)
    assert "0.3056" in assert_one_line(exc)  # says what to put there


def test_stats_mismatch_cifar10_constants(tmp_path):
    """The real CIFAR-10 constants do not fit the generated images: an error, not silence."""
    data_dir = tmp_path / "data"
    exp = formats.make_cifar10(data_dir / "raw")
    cfg = composed("cifar10", data_dir, "dataset.val_size=30", "dataset.md5=null", "dataset.url=null")
    with pytest.raises(BenchmarkError, match=r"conf/dataset/cifar10\.yaml") as exc:
        prepare_dataset(cfg.dataset, cfg.data_dir)
    assert_one_line(exc)
    assert_no_temp_dirs(data_dir)
    assert exp.path.exists()


# ---------------------------------------------------------------- errors


def test_missing_archive(tmp_path):
    data_dir = tmp_path / "data"
    cfg = composed("cifar10", data_dir, "dataset.url=null")
    with pytest.raises(BenchmarkError) as exc:
        prepare_dataset(cfg.dataset, cfg.data_dir)
    message = assert_one_line(exc)
    assert str(data_dir / "raw" / "cifar-10-python.tar.gz") in message
    assert f"put cifar-10-python.tar.gz in {data_dir / 'raw'}" in message
    assert "dataset.source=" in message
    assert_nothing_cached(data_dir)


def test_missing_source(tmp_path):
    missing = tmp_path / "elsewhere" / "tiny-imagenet-200.zip"
    ds = small_config("tiny_imagenet", source=str(missing))
    with pytest.raises(BenchmarkError) as exc:
        prepare_dataset(ds, tmp_path / "data")
    message = assert_one_line(exc)
    assert str(missing) in message and "does not exist" in message
    assert_nothing_cached(tmp_path / "data")


@pytest.mark.parametrize("where", ["raw", "source"])
def test_wrong_md5(tmp_path, where):
    data_dir = tmp_path / "data"
    exp = formats.make_cifar10(data_dir / "raw" if where == "raw" else tmp_path / "dl")
    official = OmegaConf.load(CONF_DIR / "dataset" / "cifar10.yaml").md5
    extra = [f"dataset.source={exp.path}"] if where == "source" else []
    cfg = composed(
        "cifar10", data_dir, "dataset.val_size=30", "dataset.url=null", "dataset.mean=null", "dataset.std=null", *extra
    )
    assert cfg.dataset.md5 == official == "c58f30108f718f92721af3b95e74349a"
    with pytest.raises(BenchmarkError) as exc:
        prepare_dataset(cfg.dataset, cfg.data_dir)
    message = assert_one_line(exc)
    assert str(exp.path) in message and official in message and formats.md5_of(exp.path) in message
    assert_nothing_cached(data_dir)


def _truncated_cifar10(root):
    return formats.truncate(formats.make_cifar10(root).path), small_config("cifar10")


def _truncated_cifar100(root):
    return formats.truncate(formats.make_cifar100(root).path), small_config("cifar100")


def _truncated_zip(root):
    return formats.truncate(formats.make_tiny_imagenet(root).path), small_config("tiny_imagenet")


def _truncated_parquet(root):
    exp = formats.make_tiny_imagenet_parquet(root)
    return formats.truncate(exp.path / "data" / "train-00000-of-00001.parquet"), small_config("tiny_imagenet")


@pytest.mark.parametrize(
    "make",
    [_truncated_cifar10, _truncated_cifar100, _truncated_zip, _truncated_parquet],
    ids=["cifar10.tar.gz", "cifar100.tar.gz", "zip", "parquet"],
)
def test_truncated_file(tmp_path, make):
    bad, ds = make(tmp_path / "dl")
    source = bad if bad.suffix != ".parquet" else tmp_path / "dl"
    ds.source = str(source)
    data_dir = tmp_path / "data"
    with pytest.raises(BenchmarkError) as exc:
        prepare_dataset(ds, data_dir)
    message = assert_one_line(exc)
    assert str(bad) in message and "truncated" in message
    assert_nothing_cached(data_dir)


@pytest.mark.parametrize("fraction", [0.1, 0.9, 0.99])
def test_truncated_tar_anywhere(tmp_path, fraction):
    """Cut at any point (inside a member, inside the gzip trailer): still one clean error."""
    path = formats.truncate(formats.make_cifar10(tmp_path / "dl").path, fraction)
    with pytest.raises(BenchmarkError) as exc:
        prepare_dataset(small_config("cifar10", source=str(path)), tmp_path / "data")
    assert str(path) in assert_one_line(exc)
    assert_nothing_cached(tmp_path / "data")


def _overwrite_middle(path: Path, at: float = 0.4, length: int = 300) -> Path:
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    data[start : start + length] = b"\xff" * length
    path.write_bytes(bytes(data))
    return path


def _damaged_cifar_folder(root):
    """An extracted folder whose data_batch_2 was cut short."""
    exp = formats.make_cifar10(root, extracted=True)
    bad = formats.truncate(exp.path / "cifar-10-batches-py" / "data_batch_2")
    return small_config("cifar10", source=str(exp.path)), bad


def _corrupted_tar_gz(root):
    """Bytes overwritten inside the gzip stream: the size is right, the data garbage."""
    exp = formats.make_cifar10(root)
    return small_config("cifar10", source=str(exp.path)), _overwrite_middle(exp.path)


def _batch_without_data(root):
    exp = formats.make_cifar10(root, extracted=True)
    batch = exp.path / "cifar-10-batches-py" / "data_batch_1"
    content = sources.unpickle_cifar_batch(io.BytesIO(batch.read_bytes()), str(batch))
    del content[b"data"]
    batch.write_bytes(pickle.dumps(content, protocol=2))
    return small_config("cifar10", source=str(exp.path)), exp.path


def _corrupted_zip(root):
    exp = formats.make_tiny_imagenet(root)
    return small_config("tiny_imagenet", source=str(exp.path)), _overwrite_middle(exp.path)


def _tiny_folder_without_class(root):
    exp = formats.make_tiny_imagenet(root, extracted=True)
    shutil.rmtree(exp.path / "tiny-imagenet-200" / "train" / formats.TINY_WNIDS[0])
    return small_config("tiny_imagenet", source=str(exp.path)), exp.path / "tiny-imagenet-200" / "train"


def _tiny_unknown_val_wnid(root):
    exp = formats.make_tiny_imagenet(root, extracted=True)
    ann = exp.path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text().replace(formats.TINY_WNIDS[0], "n99999999"))
    return small_config("tiny_imagenet", source=str(exp.path)), "n99999999"


def _corrupted_parquet(root):
    exp = formats.make_tiny_imagenet_parquet(root)
    bad = _overwrite_middle(exp.path / "data" / "valid-00000-of-00001.parquet", at=0.5)
    return small_config("tiny_imagenet", source=str(exp.path)), bad


def _parquet_wrong_columns(root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    exp = formats.make_tiny_imagenet_parquet(root)
    bad = exp.path / "data" / "train-00000-of-00001.parquet"
    pq.write_table(pa.table({"img": [b"x"], "label": [0]}), bad)  # pyarrow's message spans lines
    return small_config("tiny_imagenet", source=str(exp.path)), bad


def _parquet_missing_split(root):
    exp = formats.make_tiny_imagenet_parquet(root)
    (exp.path / "data" / "valid-00000-of-00001.parquet").unlink()
    return small_config("tiny_imagenet", source=str(exp.path)), "valid-*.parquet"


@pytest.mark.parametrize(
    "make",
    [
        _damaged_cifar_folder,
        _corrupted_tar_gz,
        _batch_without_data,
        _corrupted_zip,
        _tiny_folder_without_class,
        _tiny_unknown_val_wnid,
        _corrupted_parquet,
        _parquet_wrong_columns,
        _parquet_missing_split,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_damaged_files(tmp_path, make):
    """Every problem with the files is one BenchmarkError line naming what is wrong."""
    ds, named = make(tmp_path / "dl")
    with pytest.raises(BenchmarkError) as exc:
        prepare_dataset(ds, tmp_path / "data")
    assert str(named) in assert_one_line(exc)
    assert_nothing_cached(tmp_path / "data")


def test_mean_without_std(tmp_path):
    exp = formats.make_cifar10(tmp_path / "dl")
    ds = small_config("cifar10", source=str(exp.path), mean=[0.5, 0.5, 0.5])
    with pytest.raises(BenchmarkError, match=r"conf/dataset/cifar10\.yaml") as exc:
        prepare_dataset(ds, tmp_path / "data")
    assert "dataset.mean/std" in assert_one_line(exc)


def test_not_the_expected_archive(tmp_path):
    """A CIFAR-100 archive given for CIFAR-10 is named as such, not read as something else."""
    exp = formats.make_cifar100(tmp_path / "dl")
    ds = small_config("cifar10", source=str(exp.path))
    with pytest.raises(BenchmarkError, match="cifar-10-batches-py/data_batch_1") as exc:
        prepare_dataset(ds, tmp_path / "data")
    assert str(exp.path) in assert_one_line(exc)
    assert_nothing_cached(tmp_path / "data")


def test_incomplete_folder(tmp_path):
    exp = formats.make_cifar10(tmp_path / "dl", extracted=True)
    (exp.path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(BenchmarkError, match="data_batch_3 is missing") as exc:
        prepare_dataset(small_config("cifar10", source=str(exp.path)), tmp_path / "data")
    assert_one_line(exc)
    assert_nothing_cached(tmp_path / "data")


def test_labels_out_of_range(tmp_path):
    exp = formats.make_cifar10(tmp_path / "dl")
    with pytest.raises(BenchmarkError, match=r"labels outside 0\.\.4") as exc:
        prepare_dataset(small_config("cifar10", source=str(exp.path), num_classes=5), tmp_path / "data")
    assert_one_line(exc)
    assert_nothing_cached(tmp_path / "data")


def test_val_size_too_large(tmp_path):
    exp = formats.make_cifar10(tmp_path / "dl")
    with pytest.raises(BenchmarkError, match="val_size=120") as exc:
        prepare_dataset(small_config("cifar10", source=str(exp.path), val_size=120), tmp_path / "data")
    assert_one_line(exc)
    assert_nothing_cached(tmp_path / "data")


# ---------------------------------------------------------------- cache reuse


def test_cache_is_reused(tmp_path):
    data_dir = tmp_path / "data"
    exp = formats.make_cifar10(data_dir / "raw")
    ds = small_config("cifar10")
    first = prepare_dataset(ds, data_dir)
    target = cache_dir(ds, data_dir)
    stamps = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    exp.path.unlink()  # the raw archive is not needed any more
    second = prepare_dataset(ds, data_dir)
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == stamps
    assert np.array_equal(first.val_idx, second.val_idx) and np.array_equal(first.train_x, second.train_x)
    assert first.mean == second.mean and first.std == second.std
    assert sorted(p.name for p in (data_dir / "cache").iterdir()) == ["cifar10"]


def test_cache_with_other_settings_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    formats.make_cifar10(data_dir / "raw")
    prepare_dataset(small_config("cifar10"), data_dir)
    with pytest.raises(BenchmarkError, match="delete it to rebuild") as exc:
        prepare_dataset(small_config("cifar10", val_size=20), data_dir)
    assert str(cache_dir(small_config("cifar10"), data_dir)) in assert_one_line(exc)


def test_outdated_cache_is_rebuilt_whole(tmp_path):
    data_dir = tmp_path / "data"
    exp = formats.make_cifar10(data_dir / "raw")
    ds = small_config("cifar10")
    target = cache_dir(ds, data_dir)
    target.mkdir(parents=True)
    (target / "meta.json").write_text(json.dumps({"version": 0}))
    (target / "stale.npy").write_bytes(b"old")
    data = prepare_dataset(ds, data_dir)
    assert not (target / "stale.npy").exists()
    assert json.loads((target / "meta.json").read_text())["version"] == CACHE_VERSION
    assert np.array_equal(data.train_y, exp.train_y)
    assert sorted(p.name for p in (data_dir / "cache").iterdir()) == ["cifar10"]


# ---------------------------------------------------------------- downloads


def test_download_unreachable(tmp_path):
    dest = tmp_path / "raw" / "x"
    with pytest.raises(BenchmarkError) as exc:
        sources.download(DEAD_URL, dest, None, "put x in raw/")
    message = assert_one_line(exc)
    assert DEAD_URL in message and "put x in raw/" in message
    assert sorted(p.name for p in dest.parent.iterdir()) == []  # no .part file, no dest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on loopback serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_prepare_downloads_into_raw(tmp_path, http_server):
    www, base = http_server
    exp = formats.make_cifar10(www)
    data_dir = tmp_path / "data"
    ds = small_config("cifar10", url=f"{base}/cifar-10-python.tar.gz", md5=formats.md5_of(exp.path))
    data = prepare_dataset(ds, data_dir)
    assert np.array_equal(data.train_y, exp.train_y)
    assert sorted(p.name for p in (data_dir / "raw").iterdir()) == ["cifar-10-python.tar.gz"]
    assert formats.md5_of(data_dir / "raw" / "cifar-10-python.tar.gz") == ds.md5


def test_download_with_wrong_md5_leaves_nothing(tmp_path, http_server):
    www, base = http_server
    formats.make_cifar10(www)
    data_dir = tmp_path / "data"
    ds = small_config("cifar10", url=f"{base}/cifar-10-python.tar.gz", md5="0" * 32)
    with pytest.raises(BenchmarkError, match="0" * 32) as exc:
        prepare_dataset(ds, data_dir)
    assert_one_line(exc)
    assert sorted(p.name for p in (data_dir / "raw").iterdir()) == []
    assert_nothing_cached(data_dir)


def test_download_missing_url_path(tmp_path, http_server):
    _, base = http_server
    dest = tmp_path / "raw" / "cifar-10-python.tar.gz"
    with pytest.raises(BenchmarkError, match="404") as exc:
        sources.download(f"{base}/nope.tar.gz", dest, None, "hint")
    assert_one_line(exc)
    assert list(dest.parent.iterdir()) == []


# ---------------------------------------------------------------- command line


@pytest.mark.cli
def test_cli_reports_missing_archive(tmp_path):
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCHMARK_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "dataset=cifar10",
            f"data_dir={data_dir}",
            "dataset.url=http://127.0.0.1:9/cifar-10-python.tar.gz",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "cifar-10-python.tar.gz" in last, proc.stderr
    assert "Traceback" not in proc.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "cifar-10-python.tar.gz" in status["reason"]
    assert not (data_dir / "raw").exists() or list((data_dir / "raw").iterdir()) == []
    assert_nothing_cached(data_dir)


def _prepare_digits_in(data_dir: str) -> int:
    from helpers import compose

    from benchmark.data import prepare_dataset

    return len(prepare_dataset(compose().dataset, data_dir).train_idx)


def test_concurrent_prepare_builds_once_and_both_succeed(tmp_path):
    """Runs of a sweep start together: one builds the cache, the other waits and reads it."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        sizes = pool.map(_prepare_digits_in, [str(tmp_path)] * 2)
    assert sizes == [1257, 1257]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["digits"]
