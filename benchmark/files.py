"""Files written so that no reader ever sees half of one: temporary name, fsync, rename.

The run directory, the data cache, the backends' checkpoints and the reports all
write through these, so they sit below every one of them (imports nothing but the
standard library and benchmark's errors).

On a shared filesystem a colleague may plant a symbolic link at any name a writer
would open (docs/security.md): every file is created under a fresh name with O_EXCL
(mkstemp, mkdtemp), its mode set on the open descriptor, and renamed over the target
(a rename replaces a link, never writes through it); locks are opened with O_NOFOLLOW;
clean-ups remove a link, never what it points at.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from benchmark import BenchmarkError

# A write that fails for one of these is the disk's (or the quota's) fault, not the run's.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
DISK_MESSAGES = ("No space left on device", "Disk quota exceeded", "File too large", "Read-only file system")


# A user string that becomes one file or folder name: no separator, no "..", no control
# character, no leading dot or dash (hidden files, options), of a length every filesystem takes.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}")


def is_safe_name(value: object) -> bool:
    return isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None and ".." not in value


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_URL_QUERY_VALUE = re.compile(r"(?P<key>[?&;][^=&;#\s/,'\"]+=)[^&;#\s,'\"]*")
REDACTED = "***"


def redact_url(text: str) -> str:
    """`text` with every URL's credentials (user:token@) and query values (?token=...)
    replaced by ***: what the benchmark writes or logs keeps no secret a URL carried."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return _URL_QUERY_VALUE.sub(lambda m: f"{m['key']}{REDACTED}", text) if "://" in text else text


def url_has_secrets(url: str | None) -> bool:
    return bool(url) and redact_url(str(url)) != url


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
            remove(leftover)
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


def remove(path: Path) -> None:
    """Delete `path` (a file, a folder with its content, or a link: only the link),
    quietly where it is gone; never deletes through a link."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)  # rmtree removes the links inside, not their targets
    except OSError:
        pass


def shared_mode(fd: int, directory: bool = False) -> None:
    """Give the file (folder) open as `fd` the mode the umask allows: mkstemp and mkdtemp
    make them private, and colleagues read a shared sweep or cache. Set on the
    descriptor, so a name swapped for a link meanwhile is never changed."""
    os.fchmod(fd, (0o777 if directory else 0o666) & ~umask())


def new_temporary(path: Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """A fresh file beside `path` to write it under (O_EXCL: never an existing name or a
    planted link), with the umask's mode: its open descriptor and its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    shared_mode(fd)
    return fd, Path(tmp)


def new_private_dir(path: Path) -> Path:
    """A fresh folder beside `path`, private (mkdtemp: O_EXCL semantics, mode 0700) while
    it is filled: nobody else can plant a link in it meanwhile."""
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))


def set_mode(path: Path, mode: int) -> None:
    """chmod `path` through a descriptor opened without following a link: a name swapped
    for a link after it was created is refused, never the link's target changed."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """Rename a fully written `tmp` over `path`, its bytes on disk first (node loss)."""
    fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temporary(path)
    with writing(path, tmp):
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def open_lock(path: Path, what: str):
    """The lock file `path` open for flock (created where missing), never through a link:
    a link planted at its name is refused with one line."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BenchmarkError(
                f"{path} ({what}) is a symbolic link: refused, nothing written through it; delete the link"
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BenchmarkError(f"{path} ({what}) is not a regular file: refused; delete it")
    return os.fdopen(fd, "a")


def links_out(root: Path) -> list[Path]:
    """The symbolic links below `root` whose target lies outside it, found
    without following any link."""
    base = os.path.realpath(root)
    found = []
    for here, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(here) / name
            if path.is_symlink():
                if os.path.commonpath([base, os.path.realpath(path)]) != base:
                    found.append(path)
    return sorted(found)


def foreign_folders(root: Path) -> list[Path]:
    """`root` and the folders below it (no link followed) that belong to another user."""
    me = os.geteuid()
    found = []
    for here, dirs, _ in os.walk(root, followlinks=False):
        if os.lstat(here).st_uid != me:
            found.append(Path(here))
        dirs[:] = [d for d in dirs if not (Path(here) / d).is_symlink()]
    return found


def refuse_links_out(root: Path, what: str, own: bool = False) -> None:
    """Refuse (one line) a folder that is itself a link or that holds links pointing out
    of it: a writer following one would change a file elsewhere. With `own`, also one
    where a folder belongs to someone else: its owner could swap what is inside for links
    at any time, after any check (a run's directory is its own user's; a shared cache is
    not, and is checked without it)."""
    if root.is_symlink():
        raise BenchmarkError(
            f"{what} {root} is a symbolic link (to {os.path.realpath(root)}): refused, nothing written; "
            "give the real directory"
        )
    if not root.is_dir():
        return
    foreign = foreign_folders(root) if own else []
    if foreign:
        owner = os.lstat(foreign[0]).st_uid
        raise BenchmarkError(
            f"{what} {root} holds {foreign[0]}, which belongs to uid {owner}, not to you (uid {os.geteuid()}): "
            "refused, nothing written; launch into a directory of your own (hydra.sweep.dir=... or hydra.run.dir=...)"
        )
    found = links_out(root)
    if found:
        shown = ", ".join(f"{p.relative_to(root)} -> {os.readlink(p)}" for p in found[:3])
        raise BenchmarkError(
            f"{what} {root} holds symbolic link(s) pointing out of it ({shown}{', ...' if len(found) > 3 else ''}): "
            "refused, nothing written; delete the links (someone with write access there may have planted them)"
        )


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


MAX_JSON_BYTES = 64 << 20  # the run's and the sweep's JSON files are kilobytes


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file, never through a link nor from a device or FIFO (a
    colleague's /dev/zero would never end): OSError for those, for a missing file, and
    for one larger than `max_bytes`."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"larger than {max_bytes} bytes", str(path))
        return fh.read(max_bytes + 1)


def read_json(path: Path) -> dict | None:
    """A JSON object file's content; None if it is missing, unreadable or not an object
    (RunDir.damaged_files tells a damaged file from a missing one)."""
    try:
        data = json.loads(read_regular(path, MAX_JSON_BYTES).decode())
    except (OSError, ValueError):  # missing, a link, not a file, too large, not JSON, not UTF-8
        return None
    return data if isinstance(data, dict) else None
