"""Readers for the official raw formats. Each returns a :class:`RawDataset` of uint8 NHWC.

Every problem with a file (missing, wrong checksum, truncated, unexpected layout)
is raised as a one-line :class:`BenchmarkError` that names the file and what to do.
"""

from __future__ import annotations

import base64
import hashlib
import io
import netrc
import os
import pickle
import tarfile
import time
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark import BenchmarkError
from benchmark.files import is_safe_name, new_temporary, redact_url


@dataclass
class RawDataset:
    train_x: np.ndarray  # (N, H, W, 3) uint8
    train_y: np.ndarray  # (N,) int64
    test_x: np.ndarray
    test_y: np.ndarray
    description: str  # where it came from, for the log and the cache's meta.json


# ---------------------------------------------------------------- files and downloads


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (pyarrow's, for one, spans several)."""
    return " ".join(str(exc).split())


CIFAR_HOME = "https://www.cs.toronto.edu/~kriz/cifar.html"  # the official downloads of both CIFARs


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as pickles written by Python 3 at protocol <= 2 use it: bytes
    are stored as their latin-1 text. Nothing but that one conversion is admitted."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not a bytes value")
    return text.encode("latin1")


class _CifarUnpickler(pickle.Unpickler):
    """Resolves only the globals the official CIFAR python batches refer to; a pickle
    naming any other (os.system, builtins.eval, ...) is refused before it is called."""

    # (module, name) -> the object; the batches are dicts of bytes keys, lists, bytes and
    # uint8 numpy arrays, written by Python 2's cPickle (numpy 1.x names); the numpy 2
    # module name and Python 3's protocol-2 bytes come from files re-pickled since
    ALLOWED = {
        # the function numpy's own array pickles call, wherever this numpy keeps it
        ("numpy.core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],
        ("numpy._core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,
    }

    def __init__(self, fh, origin: str):
        super().__init__(fh, encoding="bytes")  # Python 2 str -> bytes, as the official readers do
        self.origin = origin

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise BenchmarkError(
                f"{self.origin} refers to {module}.{name}, which no official CIFAR batch contains: refused, "
                f"nothing in it was run; delete the file and download it again from {CIFAR_HOME}"
            ) from None


def unpickle_cifar_batch(fh, origin: str) -> dict:
    """One official CIFAR python batch (a pickled dict) from the open binary file `fh`,
    through an unpickler that admits only what that format needs: a file from an
    untrusted mirror cannot run code. `origin` names the file in errors."""
    try:
        batch = _CifarUnpickler(fh, origin).load()
    except (tarfile.TarError, EOFError, OSError, zlib.error, BenchmarkError):
        raise  # the archive itself is damaged (reported by the caller), or a refused global
    except Exception as exc:  # garbage unpickles into almost any exception type
        raise BenchmarkError(
            f"{origin} is damaged ({exc.__class__.__name__}: {_one_line(exc)}); delete it and download it again"
        ) from exc
    if not isinstance(batch, dict):
        raise BenchmarkError(
            f"{origin} holds a {type(batch).__name__}, not an official CIFAR batch (a dict); "
            f"delete it and download it again from {CIFAR_HOME}"
        )
    return batch


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    # a checksum against the md5 the dataset's publishers list, not a security measure
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_md5(path: Path, expected: str | None) -> None:
    if expected is None:
        return
    actual = md5sum(path)
    if actual != expected:
        raise BenchmarkError(
            f"{path}: md5 {actual} does not match the official {expected}; "
            "the file is corrupt or incomplete: delete it and download it again"
        )


# The official archives' sizes in bytes: a download may not exceed its own by more than
# DOWNLOAD_SLACK (a mirror that streams without end fills no disk); other files get DEFAULT_MAX_BYTES.
OFFICIAL_SIZES = {
    "cifar-10-python.tar.gz": 170_498_071,
    "cifar-100-python.tar.gz": 169_001_437,
    "tiny-imagenet-200.zip": 248_100_043,
}
DOWNLOAD_SLACK = 1.05
DEFAULT_MAX_BYTES = 4 << 30
# The whole download, not only each read (urllib's timeout): a mirror that trickles a
# byte a minute never ends otherwise. 2 h is 35 kB/s for the largest official archive.
DOWNLOAD_DEADLINE_S = float(os.environ.get("BENCHMARK_DOWNLOAD_DEADLINE", "7200"))
READ_TIMEOUT_S = 60


def _request(url: str) -> urllib.request.Request:
    """The request for `url`, with the user's ~/.netrc (or $NETRC) credentials for its host (so that
    none has to be written into the URL, which Hydra's .hydra/ records keep); they are
    never sent on to the host of a redirect."""
    parts = urllib.parse.urlsplit(url)
    request = urllib.request.Request(url)  # noqa: S310  http(s) only, checked by the caller
    if parts.username is None and parts.hostname:
        try:
            entry = netrc.netrc(os.environ.get("NETRC")).authenticators(parts.hostname)  # curl's NETRC too
        except (FileNotFoundError, netrc.NetrcParseError, OSError):
            entry = None
        if entry and entry[0] is not None:
            token = base64.b64encode(f"{entry[0]}:{entry[2] or ''}".encode()).decode()
            request.add_unredirected_header("Authorization", f"Basic {token}")
    elif parts.username is not None:  # user:token@host: urllib sends no credentials from the URL itself
        token = base64.b64encode(
            f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}".encode()
        ).decode()
        netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))  # noqa: S310
        request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def download(
    url: str,
    dest: Path,
    md5: str | None,
    hint: str,
    max_bytes: int | None = None,
    deadline_s: float | None = None,
) -> Path:
    """Fetch `url` to `dest` through a temporary name; nothing is left on failure.

    Only http(s) URLs are opened (never file: or another scheme urllib knows): the
    official CIFAR mirror is https, the official Tiny-ImageNet one only http. At most
    `max_bytes` (default: the official size of `dest`'s archive, and a margin) are read,
    within `deadline_s` seconds in all; errors name the URL without its credentials."""
    shown = redact_url(url)
    if urllib.parse.urlsplit(url).scheme not in ("https", "http"):
        raise BenchmarkError(f"cannot download {shown}: not an http(s) URL; {hint}")
    if max_bytes is None:
        official = OFFICIAL_SIZES.get(dest.name)
        max_bytes = int(official * DOWNLOAD_SLACK) if official else DEFAULT_MAX_BYTES
    limit_s = DOWNLOAD_DEADLINE_S if deadline_s is None else deadline_s
    deadline = time.monotonic() + limit_s
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temporary(dest, suffix=".part")
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(_request(url), timeout=min(READ_TIMEOUT_S, limit_s)) as response,  # noqa: S310
        ):
            announced = response.headers.get("Content-Length")
            if announced and announced.isdigit() and int(announced) > max_bytes:
                raise BenchmarkError(
                    f"{shown} announces {int(announced)} bytes, more than the {max_bytes} its file may have: "
                    f"refused, nothing kept; {hint}"
                )
            written = 0
            # read1: what has arrived (read(n) would wait for n bytes, past the deadline)
            while block := response.read1(1 << 20):
                written += len(block)
                if written > max_bytes:
                    raise BenchmarkError(
                        f"{shown} sent more than the {max_bytes} bytes its file may have: refused, nothing kept; {hint}"
                    )
                if time.monotonic() > deadline:
                    raise BenchmarkError(
                        f"downloading {shown} took longer than {limit_s:.0f} s "
                        f"(BENCHMARK_DOWNLOAD_DEADLINE): stopped, nothing kept; {hint}"
                    )
                out.write(block)
        verify_md5(tmp, md5)
        os.replace(tmp, dest)
    except BenchmarkError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # network errors of every kind
        tmp.unlink(missing_ok=True)
        raise BenchmarkError(
            f"could not download {shown} ({exc.__class__.__name__}: {redact_url(_one_line(exc))}); {hint}"
        ) from exc
    return dest


# ---------------------------------------------------------------- CIFAR-10 / CIFAR-100

CIFAR_LAYOUT = {
    # dataset: (folder inside the archive, train members, test member, label key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels"),
    "cifar100": ("cifar-100-python", ["train"], "test", "fine_labels"),
}


def _cifar_arrays(batches: list[dict], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([np.asarray(b[b"data"] if b"data" in b else b["data"]) for b in batches])
    labels = np.concatenate([np.asarray(b.get(label_key.encode(), b.get(label_key))) for b in batches])
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # stored channel-first
    return np.ascontiguousarray(images, dtype=np.uint8), labels.astype(np.int64)


def read_cifar(source: Path, name: str) -> RawDataset:
    """The official python archive (.tar.gz) or the folder it extracts to."""
    folder, train_members, test_member, label_key = CIFAR_LAYOUT[name]

    def load_all(read_member) -> tuple[list[dict], list[dict]]:
        return [read_member(m) for m in train_members], [read_member(test_member)]

    if source.is_dir():
        root = source / folder if (source / folder).is_dir() else source

        def read_member(member: str) -> dict:
            path = root / member
            if not path.is_file():
                raise BenchmarkError(f"{path} is missing: {source} is not an extracted {folder} folder")
            with open(path, "rb") as fh:
                try:
                    return unpickle_cifar_batch(fh, str(path))
                except (EOFError, OSError) as exc:
                    raise BenchmarkError(f"{path} is truncated ({_one_line(exc)}); extract the archive again") from exc

        train, test = load_all(read_member)
    else:
        try:
            with tarfile.open(source, "r:gz") as tar:

                def read_member(member: str) -> dict:
                    try:
                        fh = tar.extractfile(f"{folder}/{member}")
                    except KeyError:
                        raise BenchmarkError(
                            f"{source} has no {folder}/{member}: not the official {name} python archive"
                        ) from None
                    return unpickle_cifar_batch(fh, f"{source}:{folder}/{member}")

                train, test = load_all(read_member)
        except (tarfile.TarError, EOFError, OSError, pickle.UnpicklingError, zlib.error) as exc:
            raise BenchmarkError(
                f"{source} is truncated or not a tar.gz archive ({_one_line(exc)}); delete it and download it again"
            ) from exc
    try:
        train_x, train_y = _cifar_arrays(train, label_key)
        test_x, test_y = _cifar_arrays(test, label_key)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BenchmarkError(
            f"{source}: batches are not in the official {name} python format "
            f"({exc.__class__.__name__}: {_one_line(exc)})"
        ) from exc
    return RawDataset(train_x, train_y, test_x, test_y, f"{name} python archive {source}")


# ---------------------------------------------------------------- Tiny-ImageNet


def _decode_rgb(data: bytes, size: int, origin: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # the image decoder only for the datasets stored as images

    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only: the size is known before decoding
            if img.size != (size, size):
                raise BenchmarkError(f"{origin}: image is {img.size[0]}x{img.size[1]}, expected {size}x{size}")
            # Grayscale images become 3 identical channels (docs/protocol.md §3).
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # refused by Pillow from the header, before decoding
        raise BenchmarkError(
            f"{origin}: not a {size}x{size} image ({_one_line(exc)}): refused undecoded; the dataset files are damaged"
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise BenchmarkError(
            f"{origin}: not a readable image ({_one_line(exc)}); the dataset files are damaged"
        ) from exc
    if rgb.shape != (size, size, 3):
        raise BenchmarkError(f"{origin}: image is {rgb.shape[1]}x{rgb.shape[0]}, expected {size}x{size}")
    return rgb


class _ZipTree:
    """Read files of the tiny-imagenet-200 layout from the zip or from the extracted folder."""

    def __init__(self, source: Path):
        self.source = source
        self.zip = None
        if source.is_dir():
            self.root = source / "tiny-imagenet-200" if (source / "tiny-imagenet-200").is_dir() else source
        else:
            try:
                self.zip = zipfile.ZipFile(source)
            except (zipfile.BadZipFile, OSError) as exc:
                raise BenchmarkError(
                    f"{source} is truncated or not a zip archive ({_one_line(exc)}); delete it and download it again"
                ) from exc
            self.names = set(self.zip.namelist())

    def read(self, rel: str) -> bytes:
        if self.zip is None:
            path = self.root / rel
            if not path.is_file():
                raise BenchmarkError(f"{path} is missing: {self.source} is not a tiny-imagenet-200 folder")
            return path.read_bytes()
        name = f"tiny-imagenet-200/{rel}"
        if name not in self.names:
            raise BenchmarkError(f"{self.source} has no {name}: not the official tiny-imagenet-200.zip")
        try:
            return self.zip.read(name)
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
            raise BenchmarkError(
                f"{self.source}: {name} is damaged ({_one_line(exc)}); download the archive again"
            ) from exc

    def list_dir(self, rel: str) -> list[str]:
        if self.zip is None:
            if not (self.root / rel).is_dir():
                raise BenchmarkError(f"{self.root / rel} is missing: {self.source} is not a tiny-imagenet-200 folder")
            return sorted(p.name for p in (self.root / rel).iterdir())
        prefix = f"tiny-imagenet-200/{rel.rstrip('/')}/"
        return sorted(
            {n[len(prefix) :].split("/")[0] for n in self.names if n.startswith(prefix) and len(n) > len(prefix)}
        )


def _check_member_name(name: str, origin: str) -> None:
    """A name read from the dataset's own files that becomes part of a path: one safe name."""
    if not is_safe_name(name):
        raise BenchmarkError(
            f"{origin} names {name!r}, which is not a plain file name ('/', '..' or control characters): "
            "refused; the dataset files are damaged or were tampered with"
        )


def read_tiny_imagenet_official(source: Path, size: int = 64) -> RawDataset:
    """`tiny-imagenet-200.zip` (or its extracted folder): train/<wnid>/images, val/ as test."""
    tree = _ZipTree(source)
    wnids = sorted(tree.read("wnids.txt").decode().split())
    for wnid in wnids:  # each becomes a path (train/<wnid>/images)
        _check_member_name(wnid, f"{source}: wnids.txt")
    label_of = {w: i for i, w in enumerate(wnids)}
    train_x, train_y = [], []
    for wnid in wnids:
        for fname in tree.list_dir(f"train/{wnid}/images"):
            rel = f"train/{wnid}/images/{fname}"
            train_x.append(_decode_rgb(tree.read(rel), size, f"{source}:{rel}"))
            train_y.append(label_of[wnid])
    test_x, test_y = [], []
    for line in tree.read("val/val_annotations.txt").decode().splitlines():
        if not line.strip():
            continue
        fname, wnid = (line.split("\t") + [""])[:2]
        _check_member_name(fname, f"{source}: val/val_annotations.txt")
        if wnid not in label_of:
            raise BenchmarkError(f"{source}: val/val_annotations.txt names {wnid!r}, which is not in wnids.txt")
        rel = f"val/images/{fname}"
        test_x.append(_decode_rgb(tree.read(rel), size, f"{source}:{rel}"))
        test_y.append(label_of[wnid])
    return RawDataset(
        np.stack(train_x),
        np.asarray(train_y, np.int64),
        np.stack(test_x),
        np.asarray(test_y, np.int64),
        f"tiny-imagenet-200 official layout {source}",
    )


def read_tiny_imagenet_parquet(folder: Path, size: int = 64) -> RawDataset:
    """The Hugging Face mirror zh-plus/tiny-imagenet: train-*.parquet and valid-*.parquet."""
    import pyarrow.parquet as pq  # the parquet reader only for the mirror stored as parquet

    def load(pattern: str) -> tuple[np.ndarray, np.ndarray]:
        files = sorted(folder.rglob(pattern))
        if not files:
            raise BenchmarkError(f"{folder} has no {pattern} file: not the zh-plus/tiny-imagenet parquet mirror")
        images, labels = [], []
        for path in files:
            try:
                table = pq.read_table(path, columns=["image", "label"])
            except Exception as exc:  # pyarrow raises several unrelated types for bad files
                raise BenchmarkError(
                    f"{path} is truncated or not a parquet file ({_one_line(exc)}); download it again"
                ) from exc
            for row, (image, label) in enumerate(
                zip(table.column("image").to_pylist(), table.column("label").to_pylist(), strict=True)
            ):
                images.append(_decode_rgb(image["bytes"], size, f"{path} row {row}"))
                labels.append(label)
        return np.stack(images), np.asarray(labels, np.int64)

    train_x, train_y = load("train-*.parquet")
    test_x, test_y = load("valid-*.parquet")
    return RawDataset(train_x, train_y, test_x, test_y, f"tiny-imagenet parquet mirror {folder}")


# ---------------------------------------------------------------- digits (offline demo)


def read_digits(size: int = 32) -> RawDataset:
    """scikit-learn's bundled 8x8 digits (values 0..16) as uint8 RGB, nearest-upsampled.

    There is no official test split: the cache builder makes a stratified one.
    """
    from sklearn.datasets import load_digits  # scikit-learn's dataset loaders only for digits

    bunch = load_digits()
    scale = size // 8
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    images = np.ascontiguousarray(np.repeat(images[..., None], 3, axis=3))
    labels = bunch.target.astype(np.int64)
    empty = np.zeros((0, size, size, 3), np.uint8)
    return RawDataset(images, labels, empty, np.zeros(0, np.int64), "scikit-learn load_digits (bundled)")
