"""Small fake datasets written in the official raw formats, for offline tests.

Every generator writes real files (pickles in a tar.gz, JPEGs in a zip, parquet
files) laid out exactly like the official downloads, only with few images, and
returns what a correct reader must get back from them. Nothing here imports the
code under test, so the expectations are independent of it.

- CIFAR-10 ``cifar-10-python.tar.gz``: ``cifar-10-batches-py/data_batch_1..5`` and
  ``test_batch``, pickled dicts with bytes keys ``b'data'`` (N x 3072 uint8 rows,
  channel-first: 1024 red, 1024 green, 1024 blue, each row-major 32x32) and
  ``b'labels'`` (a list of ints).
- CIFAR-100 ``cifar-100-python.tar.gz``: ``cifar-100-python/train`` and ``test``
  with ``b'fine_labels'`` and ``b'coarse_labels'``.
- Tiny-ImageNet ``tiny-imagenet-200.zip``: ``tiny-imagenet-200/wnids.txt``,
  ``train/<wnid>/images/<wnid>_<i>.JPEG``, ``train/<wnid>/<wnid>_boxes.txt``,
  ``val/images/val_<i>.JPEG``, ``val/val_annotations.txt`` (tab-separated
  filename, wnid, x, y, w, h) and an unlabeled ``test/images``.
- The Hugging Face mirror ``zh-plus/tiny-imagenet``: ``data/train-*.parquet`` and
  ``data/valid-*.parquet`` with columns ``image`` (struct bytes/path) and ``label``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CIFAR_ROW = 3 * 32 * 32


@dataclass
class Expected:
    """What a reader must return for a generated dataset (labels in file order)."""

    path: Path  # the archive file or the folder to give as dataset.source
    train_y: np.ndarray
    test_y: np.ndarray
    # CIFAR: the raw channel-first rows as written (N x 3072 uint8)
    train_rows: np.ndarray | None = None
    test_rows: np.ndarray | None = None
    # Tiny-ImageNet: the colour each image was drawn with (N x 3), and which
    # images were written as grayscale JPEGs
    train_colors: np.ndarray | None = None
    test_colors: np.ndarray | None = None
    train_gray: np.ndarray | None = None
    test_gray: np.ndarray | None = None


def md5_of(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes(), usedforsecurity=False).hexdigest()


def truncate(path: Path, fraction: float = 0.5) -> Path:
    """Cut a file to `fraction` of its size in place (an interrupted download)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    return Path(path)


# ---------------------------------------------------------------- CIFAR


def _balanced_labels(num_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(num_classes), per_class)).astype(np.int64)


def _cifar_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    rows = rng.integers(0, 256, size=(n, CIFAR_ROW), dtype=np.uint8)
    if n:
        # A marker in image 0: pixel (row 1, column 2) is (R, G, B) = (200, 100, 50).
        # Channel-first row layout: index = channel * 1024 + row * 32 + column.
        rows[0, 0 * 1024 + 1 * 32 + 2] = 200
        rows[0, 1 * 1024 + 1 * 32 + 2] = 100
        rows[0, 2 * 1024 + 1 * 32 + 2] = 50
    return rows


def _write_tree(files: dict[str, bytes], root: Path, archive: str | None) -> Path:
    """`files` (relative name -> bytes) as a .tar.gz (when `archive`) or a folder."""
    root.mkdir(parents=True, exist_ok=True)
    if archive is None:
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root
    path = root / archive
    with tarfile.open(path, "w:gz") as tar:
        folders = sorted({name.split("/")[0] for name in files})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def make_cifar10(
    root: Path, per_class_train: int = 12, per_class_test: int = 2, extracted: bool = False, seed: int = 0
) -> Expected:
    """`root/cifar-10-python.tar.gz`, or with `extracted` the folder `root` holding
    `cifar-10-batches-py/`. The training images are spread over the 5 batches in order."""
    rng = np.random.default_rng(seed)
    train_y = _balanced_labels(10, per_class_train, rng)
    test_y = _balanced_labels(10, per_class_test, rng)
    train_rows, test_rows = _cifar_rows(len(train_y), rng), _cifar_rows(len(test_y), rng)
    files = {}
    for i, (rows, labels) in enumerate(
        zip(np.array_split(train_rows, 5), np.array_split(train_y, 5), strict=True), start=1
    ):
        batch = {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": [int(v) for v in labels],
            b"data": rows,
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(len(labels))],
        }
        files[f"cifar-10-batches-py/data_batch_{i}"] = pickle.dumps(batch, protocol=2)
    files["cifar-10-batches-py/test_batch"] = pickle.dumps(
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": [int(v) for v in test_y],
            b"data": test_rows,
            b"filenames": [f"test_{j}.png".encode() for j in range(len(test_y))],
        },
        protocol=2,
    )
    files["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_cases_per_batch": 10000, b"num_vis": 3072},
        protocol=2,
    )
    files["cifar-10-batches-py/readme.html"] = b"<html>fake</html>\n"
    path = _write_tree(files, root, None if extracted else "cifar-10-python.tar.gz")
    return Expected(path, train_y, test_y, train_rows=train_rows, test_rows=test_rows)


def make_cifar100(
    root: Path, per_class_train: int = 4, per_class_test: int = 1, extracted: bool = False, seed: int = 1
) -> Expected:
    """`root/cifar-100-python.tar.gz` (or the extracted folder): fine labels 0..99,
    coarse labels 0..19 (fine // 5, which is not the official mapping but has its shape)."""
    rng = np.random.default_rng(seed)
    train_y = _balanced_labels(100, per_class_train, rng)
    test_y = _balanced_labels(100, per_class_test, rng)
    train_rows, test_rows = _cifar_rows(len(train_y), rng), _cifar_rows(len(test_y), rng)

    def batch(name: str, rows: np.ndarray, labels: np.ndarray) -> bytes:
        return pickle.dumps(
            {
                b"filenames": [f"{name}_{j}.png".encode() for j in range(len(labels))],
                b"batch_label": f"{name} batch 1 of 1".encode(),
                b"fine_labels": [int(v) for v in labels],
                b"coarse_labels": [int(v) // 5 for v in labels],
                b"data": rows,
            },
            protocol=2,
        )

    files = {
        "cifar-100-python/train": batch("training", train_rows, train_y),
        "cifar-100-python/test": batch("testing", test_rows, test_y),
        "cifar-100-python/meta": pickle.dumps(
            {
                b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
            },
            protocol=2,
        ),
    }
    path = _write_tree(files, root, None if extracted else "cifar-100-python.tar.gz")
    return Expected(path, train_y, test_y, train_rows=train_rows, test_rows=test_rows)


# ---------------------------------------------------------------- Tiny-ImageNet

# Deliberately not sorted, like the official wnids.txt: readers label by sorted wnid.
TINY_WNIDS = ["n02124075", "n01443537", "n09246464", "n01629819"]


def class_color(label: int) -> tuple[int, int, int]:
    """A distinct flat colour per class, far apart so JPEG keeps them recognisable."""
    palette = [(220, 40, 40), (40, 200, 60), (50, 60, 210), (230, 210, 40), (200, 60, 200), (40, 200, 200)]
    return palette[label % len(palette)]


def jpeg_bytes(color: tuple[int, int, int], size: int = 64, gray: bool = False, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    if gray:
        level = int(round(0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]))
        img = Image.new("L", (size, size), level)
    else:
        img = Image.new("RGB", (size, size), color)
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=95)
    return buf.getvalue()


def _tiny_plan(per_class_train: int, per_class_val: int, seed: int):
    """Labels (by sorted wnid) of train (grouped by class) and of val (shuffled);
    the first val image and the second training image of class 0 are grayscale."""
    rng = np.random.default_rng(seed)
    sorted_wnids = sorted(TINY_WNIDS)
    train_y = np.repeat(np.arange(len(sorted_wnids)), per_class_train).astype(np.int64)
    test_y = _balanced_labels(len(sorted_wnids), per_class_val, rng)
    train_gray = np.zeros(len(train_y), bool)
    train_gray[1] = True
    test_gray = np.zeros(len(test_y), bool)
    test_gray[0] = True
    return sorted_wnids, train_y, test_y, train_gray, test_gray


def make_tiny_imagenet(
    root: Path,
    per_class_train: int = 6,
    per_class_val: int = 2,
    extracted: bool = False,
    image_size: int = 64,
    seed: int = 2,
) -> Expected:
    """`root/tiny-imagenet-200.zip` (or `root` holding the extracted `tiny-imagenet-200/`)
    with the 4 classes of TINY_WNIDS. Training images are listed per class in sorted
    wnid order, file names sorting in the order of their index (zero-padded)."""
    sorted_wnids, train_y, test_y, train_gray, test_gray = _tiny_plan(per_class_train, per_class_val, seed)
    entries: list[tuple[str, bytes | None]] = [("tiny-imagenet-200/", None)]  # None: a directory entry
    entries.append(("tiny-imagenet-200/wnids.txt", "".join(f"{w}\n" for w in TINY_WNIDS).encode()))
    entries.append(("tiny-imagenet-200/words.txt", "".join(f"{w}\tthing {w}\n" for w in TINY_WNIDS).encode()))
    entries += [("tiny-imagenet-200/train/", None)]
    k = 0
    for label, wnid in enumerate(sorted_wnids):
        entries.append((f"tiny-imagenet-200/train/{wnid}/", None))
        entries.append((f"tiny-imagenet-200/train/{wnid}/images/", None))
        boxes = []
        for i in range(per_class_train):
            name = f"{wnid}_{i:03d}.JPEG"
            data = jpeg_bytes(class_color(label), image_size, gray=bool(train_gray[k]))
            entries.append((f"tiny-imagenet-200/train/{wnid}/images/{name}", data))
            boxes.append(f"{name}\t0\t0\t{image_size - 1}\t{image_size - 1}\n")
            k += 1
        entries.append((f"tiny-imagenet-200/train/{wnid}/{wnid}_boxes.txt", "".join(boxes).encode()))
    entries += [("tiny-imagenet-200/val/", None), ("tiny-imagenet-200/val/images/", None)]
    annotations = []
    for i, label in enumerate(test_y):
        name = f"val_{i}.JPEG"
        entries.append(
            (
                f"tiny-imagenet-200/val/images/{name}",
                jpeg_bytes(class_color(int(label)), image_size, bool(test_gray[i])),
            )
        )
        annotations.append(f"{name}\t{sorted_wnids[label]}\t1\t2\t50\t60\n")
    entries.append(("tiny-imagenet-200/val/val_annotations.txt", "".join(annotations).encode()))
    entries += [("tiny-imagenet-200/test/", None), ("tiny-imagenet-200/test/images/", None)]
    entries.append(("tiny-imagenet-200/test/images/test_0.JPEG", jpeg_bytes((128, 128, 128), image_size)))

    root.mkdir(parents=True, exist_ok=True)
    if extracted:
        for name, data in entries:
            target = root / name
            if data is None:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.write_bytes(data)
        path = root
    else:
        path = root / "tiny-imagenet-200.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in entries:
                if data is None:
                    zf.writestr(zipfile.ZipInfo(name), b"")
                else:
                    zf.writestr(name, data)
    colors = lambda ys: np.asarray([class_color(int(v)) for v in ys], np.int64)  # noqa: E731
    return Expected(
        path,
        train_y,
        test_y,
        train_colors=colors(train_y),
        test_colors=colors(test_y),
        train_gray=train_gray,
        test_gray=test_gray,
    )


def make_tiny_imagenet_parquet(
    root: Path, per_class_train: int = 6, per_class_val: int = 2, image_size: int = 64, seed: int = 3
) -> Expected:
    """`root/data/train-00000-of-00001.parquet` and `valid-00000-of-00001.parquet`, the
    layout of zh-plus/tiny-imagenet; returns `root` (the folder to give as source).
    Training rows are shuffled, as in the mirror."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, train_y, test_y, train_gray, test_gray = _tiny_plan(per_class_train, per_class_val, seed)
    order = np.random.default_rng(seed).permutation(len(train_y))
    train_y, train_gray = train_y[order], train_gray[order]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("image", image_type), ("label", pa.int64())])

    def write(path: Path, labels: np.ndarray, gray: np.ndarray) -> None:
        images = [
            {"bytes": jpeg_bytes(class_color(int(y)), image_size, bool(g)), "path": f"{i}.JPEG"}
            for i, (y, g) in enumerate(zip(labels, gray, strict=True))
        ]
        table = pa.table(
            {"image": pa.array(images, type=image_type), "label": pa.array(labels.tolist(), pa.int64())}, schema=schema
        )
        pq.write_table(table, path)

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    write(data / "train-00000-of-00001.parquet", train_y, train_gray)
    write(data / "valid-00000-of-00001.parquet", test_y, test_gray)
    colors = lambda ys: np.asarray([class_color(int(v)) for v in ys], np.int64)  # noqa: E731
    return Expected(
        root,
        train_y,
        test_y,
        train_colors=colors(train_y),
        test_colors=colors(test_y),
        train_gray=train_gray,
        test_gray=test_gray,
    )
