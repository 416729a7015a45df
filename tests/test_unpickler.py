"""The CIFAR batches are pickles: the data layer reads them through a restricted
unpickler (benchmark.data.sources.unpickle_cifar_batch), so a batch from an untrusted
mirror that would run code is refused with one line, and nothing in it runs.

The legitimate batches are written by tests/formats.py (Python 3, protocol 2), and one
here the way the official files were written (Python 2's cPickle: str as BINSTRING,
numpy 1.x's ``numpy.core.multiarray._reconstruct``).
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import pickletools
import shlex
import struct
import tarfile
from pathlib import Path

import formats
import numpy as np
import pytest

from benchmark import BenchmarkError
from benchmark.data import sources


class _System:
    """Unpickles into os.system(<touch the marker>): a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class _Exec:
    """Unpickles into builtins.exec(<create the marker>): Python code, no shell."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


PAYLOADS = {"os.system": _System, "builtins.exec": _Exec}


def _payload(kind: str, marker: Path, protocol: int, nested: bool) -> bytes:
    """A pickle whose loading would create `marker`: the bare payload, or hidden in an
    otherwise well-formed batch (the labels)."""
    exploit = PAYLOADS[kind](marker)
    if nested:
        rows = np.zeros((2, formats.CIFAR_ROW), np.uint8)
        return pickle.dumps({b"batch_label": b"x", b"labels": exploit, b"data": rows}, protocol=protocol)
    return pickle.dumps(exploit, protocol=protocol)


def _tar_folder(folder: Path, archive: Path) -> Path:
    """`folder`'s content (cifar-10-batches-py/...) as a .tar.gz like the official one."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return archive


def _assert_refused(err: pytest.ExceptionInfo, origin: str, kind: str, marker: Path) -> None:
    """One line naming the file, the global refused (as the pickle spells it: os.system
    is posix.system, builtins.exec at protocol <= 2 __builtin__.exec) and what to do."""
    message = str(err.value)
    assert "\n" not in message
    assert origin in message
    refused = f"{os.system.__module__}.system" if kind == "os.system" else "exec"
    assert f"{refused}, which no official CIFAR batch contains: refused" in message
    assert "download it again" in message and sources.CIFAR_HOME in message
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_payload_is_live(tmp_path, kind):
    """Control: under plain pickle the payload does create the marker, so its absence
    below means the restricted unpickler stopped it."""
    marker = tmp_path / "ran"
    pickle.loads(_payload(kind, marker, 2, nested=True))  # noqa: S301  our own payload, to prove the marker works
    assert marker.exists()


@pytest.mark.parametrize("nested", [False, True], ids=["bare", "in-batch"])
@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_code_in_a_batch_is_refused(tmp_path, kind, protocol, nested):
    marker = tmp_path / "ran"
    with pytest.raises(BenchmarkError) as err:
        sources.unpickle_cifar_batch(io.BytesIO(_payload(kind, marker, protocol, nested)), "mirror/data_batch_1")
    _assert_refused(err, "mirror/data_batch_1", kind, marker)


@pytest.mark.parametrize("extracted", [False, True], ids=["tar.gz", "folder"])
@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_read_cifar_refuses_a_poisoned_batch(tmp_path, kind, extracted):
    """The official layout with data_batch_3 replaced: read_cifar stops there, one line."""
    marker = tmp_path / "ran"
    exp = formats.make_cifar10(tmp_path / "src", extracted=True)
    batch = exp.path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(_payload(kind, marker, 2, nested=True))
    source = exp.path if extracted else _tar_folder(exp.path, tmp_path / "cifar-10-python.tar.gz")
    origin = str(batch) if extracted else f"{source}:cifar-10-batches-py/data_batch_3"
    with pytest.raises(BenchmarkError) as err:
        sources.read_cifar(source, "cifar10")
    _assert_refused(err, origin, kind, marker)


def test_not_a_dict_is_refused(tmp_path):
    with pytest.raises(BenchmarkError, match=r"holds a list, not an official CIFAR batch"):
        sources.unpickle_cifar_batch(io.BytesIO(pickle.dumps([1, 2], protocol=2)), "x")


# ---------------------------------------------------------------- legitimate batches still load


@pytest.mark.parametrize("extracted", [False, True], ids=["tar.gz", "folder"])
def test_generated_batches_load(tmp_path, extracted):
    exp = formats.make_cifar10(tmp_path, extracted=extracted)
    raw = sources.read_cifar(exp.path, "cifar10")
    assert np.array_equal(raw.train_y, exp.train_y) and np.array_equal(raw.test_y, exp.test_y)
    assert raw.train_x[0, 1, 2].tolist() == [200, 100, 50]
    assert raw.train_x.shape == (len(exp.train_y), 32, 32, 3) and raw.train_x.dtype == np.uint8


def test_generated_cifar100_loads(tmp_path):
    exp = formats.make_cifar100(tmp_path)
    raw = sources.read_cifar(exp.path, "cifar100")
    assert np.array_equal(raw.train_y, exp.train_y) and np.array_equal(raw.test_y, exp.test_y)


class _Py2Pickler(pickle._Pickler):
    """The pure-Python pickler writing str and bytes as Python 2's str (BINSTRING), as
    cPickle wrote the official batches."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2str
    dispatch[str] = save_py2str


def test_python2_numpy1_batch_loads():
    """A batch as the official files hold it: numpy 1.x's module name, Python 2 strings,
    and exactly the three globals the unpickler admits for them."""
    rows = np.arange(2 * formats.CIFAR_ROW).astype(np.uint8).reshape(2, -1)
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [3, 7], b"data": rows, b"filenames": [b"a.png"]}
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(batch)
    data = buf.getvalue().replace(b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n")
    globals_ = {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    loaded = sources.unpickle_cifar_batch(io.BytesIO(data), "data_batch_1")
    assert loaded[b"labels"] == [3, 7] and loaded[b"batch_label"] == b"training batch 1 of 5"
    assert loaded[b"data"].dtype == np.uint8 and np.array_equal(loaded[b"data"], rows)
