"""Files written so that no reader ever sees half of one: temporary name, fsync, rename.

The run directory, the data cache, the backends' checkpoints and the reports all
write through these, so they sit below every one of them (imports nothing but the
standard library and benchmark's errors).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from benchmark import BenchmarkError

# A write that fails for one of these is the disk's (or the quota's) fault, not the run's.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
DISK_MESSAGES = ("No space left on device", "Disk quota exceeded", "File too large", "Read-only file system")


def disk_problem(exc: BaseException) -> str | None:
    """What is wrong with the disk, if a failed write `exc` says so (OSError, or a
    framework's own error carrying the OS message)."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        return os.strerror(exc.errno)
    return next((m for m in DISK_MESSAGES if m in str(exc)), None)


@contextlib.contextmanager
def writing(path: Path, *leftovers: Path):
    """A write of `path`: on any failure (or a signal) the `leftovers` (its temporary
    files) are removed, so a failed write keeps nothing half-written and frees what it
    took; a full disk becomes a one-line BenchmarkError. What `path` held before is
    untouched: writes go to a temporary name and are renamed only when complete."""
    try:
        yield
    except BaseException as exc:
        for leftover in leftovers:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        problem = disk_problem(exc)
        if problem:
            raise BenchmarkError(
                f"cannot write {path}: {problem}; free space, then launch again (what was "
                "saved before is intact, and the run resumes from it)"
            ) from exc
        raise


def umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def replace_durably(tmp: Path, path: Path) -> None:
    """Rename a fully written `tmp` over `path`, its bytes on disk first (node loss)."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with writing(path, Path(tmp)):
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it 0600; colleagues read a shared sweep
        replace_durably(Path(tmp), path)


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> dict | None:
    """A JSON object file's content; None if it is missing, unreadable or not an object
    (RunDir.damaged_files tells a damaged file from a missing one)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, unreadable, not JSON, not UTF-8
        return None
    return data if isinstance(data, dict) else None
