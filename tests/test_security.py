"""docs/security.md, threat by threat: each test plants the attack for real (a pickle that
would create a file, symbolic links, a 400-megapixel PNG, a second Unix user, a PID
file holding -1) and checks the one-line answer and that nothing outside was touched.
"""

from __future__ import annotations

import http.server
import logging
import os
import pickle
import pwd
import re
import shlex
import shutil
import struct
import subprocess
import tarfile
import threading
import time
import zlib
from pathlib import Path

import formats
import numpy as np
import pytest
import tomllib
from helpers import REPO, SMOKE_RUN, compose, copy_run, run_cli, run_main

from benchmark import BenchmarkError
from benchmark.data import prepare_dataset, sources
from benchmark.files import (
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    redact_url,
    refuse_links_out,
    remove,
    set_mode,
    write_json,
)
from benchmark.run.rundir import LOCK_NAME, RunDir

PRECIOUS = "precious: must stay as it is\n"


def _precious(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PRECIOUS)
    return path


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry below `root`: file contents, link targets, folders."""
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = f"-> {os.readlink(path)}" if path.is_symlink() else path.read_bytes() if path.is_file() else "dir"
    return out


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# ------------------------------------------------------------------ 1. no code from data


class _Touch:
    """Unpickles into os.system("touch MARKER")."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _poisoned_cifar(tmp_path: Path, marker: Path, extracted: bool) -> Path:
    exp = formats.make_cifar10(tmp_path / "src", extracted=True)
    rows = np.zeros((2, formats.CIFAR_ROW), np.uint8)
    batch = {b"batch_label": b"x", b"labels": _Touch(marker), b"data": rows}
    (exp.path / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    if extracted:
        return exp.path
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(exp.path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


@pytest.mark.parametrize("extracted", [True, False], ids=["folder", "tar.gz-md5-null"])
def test_a_poisoned_cifar_source_runs_no_code_through_the_cache(tmp_path, extracted):
    """dataset.source as a folder (no md5 applies) or a .tar.gz with dataset.md5=null:
    the payload is refused by the restricted unpickler, on the path a run takes."""
    marker = tmp_path / "pwned"
    source = _poisoned_cifar(tmp_path, marker, extracted)
    ds = compose("dataset=cifar10", f"dataset.source={source}", "dataset.md5=null").dataset
    with pytest.raises(BenchmarkError) as err:
        prepare_dataset(ds, tmp_path / "data")
    message = _one_line(str(err.value))
    assert "posix.system, which no official CIFAR batch contains: refused" in message
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "data" / "cache" / "cifar10").exists()


def test_the_torch_floor_has_weights_only_fixed():
    """CVE-2025-32434: torch.load(weights_only=True) could run code before torch 2.6."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if re.match(r"torch\s*>=", d))
    floor = tuple(int(p) for p in torch_req.split(">=")[1].split(",")[0].strip().split(".")[:2])
    assert floor >= (2, 6)
    import torch

    assert tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 6)


# ------------------------------------------------------------------ 2. no writes through links


def test_atomic_writers_replace_a_planted_link_never_its_target(tmp_path):
    outside = _precious(tmp_path / "outside" / "victim")
    run = tmp_path / "run"
    run.mkdir()
    for name, write in (
        ("status.json", lambda p: write_json(p, {"state": "running"})),
        ("metrics.csv", lambda p: atomic_write_text(p, "epoch\n1\n")),
        ("last.pt", lambda p: atomic_write_bytes(p, b"weights")),
    ):
        (run / name).symlink_to(outside)
        # the old writers' predictable temporary names, planted too: never opened now
        (run / f".{name}.tmp").symlink_to(outside)
        write(run / name)
        assert not (run / name).is_symlink() and (run / name).stat().st_size > 0
        assert outside.read_text() == PRECIOUS
    assert oct((run / "status.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    from benchmark.files import umask

    return umask()


def test_the_run_lock_is_never_opened_through_a_link(tmp_path):
    outside = _precious(tmp_path / "victim")
    dangling = tmp_path / "would-be-created"
    for target in (outside, dangling):
        run = tmp_path / f"run-{target.name}"
        run.mkdir()
        (run / LOCK_NAME).symlink_to(target)
        with pytest.raises(BenchmarkError, match="is a symbolic link: refused") as err:
            with RunDir(run).exclusive(wait_s=0):
                pass
        _one_line(str(err.value))
    assert outside.read_text() == PRECIOUS and not dangling.exists()


def test_clean_ups_and_modes_never_act_through_a_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _precious(elsewhere / "keep.bin")
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last").symlink_to(elsewhere, target_is_directory=True)
    remove(folder / "last")  # the clean-up of an old `last`
    assert not (folder / "last").exists() and (elsewhere / "keep.bin").read_text() == PRECIOUS
    (folder / "last").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(BenchmarkError, match="is a symbolic link"):
        refuse_links_out(folder / "last", "the checkpoint folder")  # the TensorFlow engine's check before saving
    mode = elsewhere.stat().st_mode
    with pytest.raises(OSError):
        set_mode(folder / "last", 0o755)  # the report's temporary folder, swapped for a link
    assert elsewhere.stat().st_mode == mode


# every name a run writes (and the old writers' temporaries); the run is refused before
# Hydra or the run writes anything
PLANTED = (
    "checkpoints/last.pt",
    "checkpoints/.last.pt.tmp",
    "checkpoints/best.pt",
    "checkpoints/.best.tmp.weights.h5",
    "checkpoints/last.json",
    "status.json",
    "metrics.csv",
    "summary.json",
    "env.json",
    "test.json",
    LOCK_NAME,
    "run.log",
    ".hydra/config.yaml",
    "events.out.tfevents.1700000000.host.1.0",
    "checkpoints",
)


@pytest.mark.parametrize("name", PLANTED)
def test_a_run_directory_holding_a_link_out_is_refused(tmp_path, data_dir, name):
    outside = _precious(tmp_path / "outside" / "victim")
    run = tmp_path / "run"
    (run / name).parent.mkdir(parents=True, exist_ok=True)
    (run / name).symlink_to(outside.parent if name == "checkpoints" else outside)
    before = _tree(tmp_path)
    code, _, err = run_main(*SMOKE_RUN, f"hydra.run.dir={run}", f"data_dir={data_dir}")
    assert code == 2
    line = _one_line(err)
    assert "holds symbolic link(s) pointing out of it" in line and name in line and "refused" in line
    assert _tree(tmp_path) == before, "something was written"


def test_a_run_directory_that_is_a_link_is_refused(tmp_path, data_dir):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "run").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = run_main(*SMOKE_RUN, f"hydra.run.dir={tmp_path / 'run'}", f"data_dir={data_dir}")
    assert code == 2 and "is a symbolic link" in _one_line(err)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.cli
def test_a_run_directory_prepared_by_someone_else_is_refused(tmp_path, data_dir, other_user):
    """A colleague pre-creates the run's folders as their own, with no link in them yet:
    every check of links would pass, and they could swap a folder for one full of links
    at any moment after. Their folder is refused, and nothing is written in it."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    os.chown(run / "checkpoints", other_user.pw_uid, other_user.pw_gid)
    code, _, err = run_main(*SMOKE_RUN, f"hydra.run.dir={run}", f"data_dir={data_dir}")
    line = _one_line(err)
    assert code == 2 and f"belongs to uid {other_user.pw_uid}, not to you" in line and "nothing written" in line
    assert _tree(run) == {"checkpoints": "dir"}


def test_a_completed_run_reused_through_a_link_is_skipped(tmp_path, data_dir, trained_run):
    """The one link a run directory may be: in a sweep, a completed run reused from
    elsewhere (stage 2 linking stage 1's runs). The sweep skips it before Hydra writes,
    and nothing in it or behind it changes. A single run's directory stays refused
    (test_a_run_directory_that_is_a_link_is_refused): Hydra writes there first."""
    source, _ = trained_run("pytorch")
    elsewhere = tmp_path / "stage1" / "run"
    copy_run(source, elsewhere)
    before = _tree(elsewhere)
    sweep = tmp_path / "sweep"
    link = sweep / "pytorch_digits_mobilenetv2_fp32_seed42" / "debug=smoke,epochs=2,optim.warmup_epochs=1"
    link.parent.mkdir(parents=True)
    link.symlink_to(elsewhere, target_is_directory=True)
    out = run_cli("--multirun", *SMOKE_RUN, "seed=42", f"hydra.sweep.dir={sweep}", f"data_dir={data_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 already completed" in out.stdout + out.stderr
    assert _tree(elsewhere) == before


@pytest.mark.cli
def test_a_sweeps_own_files_are_never_written_through_links(tmp_path, data_dir):
    """A shared sweep directory where a colleague linked the sweep's own files elsewhere:
    the sweep runs, and each link is replaced by the file, its target untouched."""
    outside = _precious(tmp_path / "victim")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for name in ("multirun.yaml", "sweep_status.csv", "slurm_jobs.json"):
        (sweep / name).symlink_to(outside)
    elsewhere = tmp_path / "elsewhere"
    _precious(elsewhere / "results.csv")
    (sweep / "report").symlink_to(elsewhere, target_is_directory=True)  # the report, swapped in by the analysis
    out = run_cli("--multirun", "seed=1", *SMOKE_RUN, f"hydra.sweep.dir={sweep}", f"data_dir={data_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert outside.read_text() == PRECIOUS
    assert _tree(elsewhere) == {"results.csv": PRECIOUS.encode()}
    assert (sweep / "report" / "results.csv").is_file() and not (sweep / "report").is_symlink()
    for name in ("multirun.yaml", "sweep_status.csv"):
        assert (sweep / name).is_file() and not (sweep / name).is_symlink()


def _digits(data_dir: Path):
    ds = compose("dataset=digits").dataset
    prepare_dataset(ds, data_dir)
    return ds


def test_a_cache_holding_a_link_out_is_refused(tmp_path):
    data = tmp_path / "data"
    ds = _digits(data)
    outside = _precious(tmp_path / "victim.npy")
    entry = data / "cache" / "digits"
    (entry / "train_x.npy").unlink()
    (entry / "train_x.npy").symlink_to(outside)
    with pytest.raises(BenchmarkError, match="holds symbolic link") as err:
        prepare_dataset(ds, data)
    _one_line(str(err.value))
    assert outside.read_text() == PRECIOUS


def test_the_cache_lock_is_never_opened_through_a_link(tmp_path):
    data = tmp_path / "data"
    outside = _precious(tmp_path / "victim")
    (data / ".locks").mkdir(parents=True)
    (data / ".locks" / "digits.lock").symlink_to(outside)
    with pytest.raises(BenchmarkError) as err:
        _digits(data)
    assert "symbolic link" in _one_line(str(err.value))
    assert outside.read_text() == PRECIOUS and not (data / "cache").exists()


def test_an_outdated_cache_that_is_a_link_is_replaced_not_emptied(tmp_path):
    data = tmp_path / "data"
    elsewhere = tmp_path / "prepared-elsewhere"
    _precious(elsewhere / "keep.txt")
    (elsewhere / "meta.json").write_text('{"version": 0}')  # another version: rebuilt
    (data / "cache").mkdir(parents=True)
    (data / "cache" / "digits").symlink_to(elsewhere, target_is_directory=True)
    _digits(data)
    assert (elsewhere / "keep.txt").read_text() == PRECIOUS
    assert not (data / "cache" / "digits").is_symlink()


# ------------------------------------------------------------------ 3. names stay inside


@pytest.mark.parametrize(
    "override",
    [
        "model.name=../../../../escape",
        "dataset.name=../../../../escape",
        "precision.name=../../escape",
        "dataset.archive=../../../escape.tar.gz",
        "framework.engine=../escape",
        "precision.name='a\tb'",  # Hydra's own grammar refuses a raw control character
    ],
)
def test_a_name_that_would_leave_the_output_root_is_refused_before_any_directory(tmp_path, monkeypatch, override):
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # outputs/ (Hydra's run directory) is relative to here
    code, _, err = run_main(override, f"data_dir={work / 'data'}")
    assert code == 2
    line = _one_line(err)
    key = override.split("=")[0]
    assert line.startswith(f"error: {key}=") and ("cannot be a file name" in line or "unknown" in line)
    assert sorted(tmp_path.rglob("*")) == [tmp_path / "a", tmp_path / "a" / "b", work], "something was created"


@pytest.mark.cli
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("dataset.url=https://host/../../../escape", "would hold '..' or a control character"),
        ("dataset.url='https://user:s3cret@host/x.tgz'", "would hold the credentials of a URL: put them in ~/.netrc"),
    ],
    ids=["dotdot", "credentials"],
)
def test_a_sweep_variant_that_would_escape_or_expose_is_refused_before_its_directory(tmp_path, override, expected):
    sweep = tmp_path / "sweep"
    out = run_cli("--multirun", "seed=1", "debug=smoke", override, f"hydra.sweep.dir={sweep}")
    assert out.returncode == 2, out.stderr[-2000:]
    assert expected in _one_line(out.stderr) and "s3cret" not in out.stderr
    assert not sweep.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["wnids.txt", "val/val_annotations.txt"])
def test_tiny_imagenet_names_are_checked_before_they_become_paths(tmp_path, where):
    exp = formats.make_tiny_imagenet(tmp_path / "src", extracted=True)
    root = exp.path / "tiny-imagenet-200"
    if where == "wnids.txt":
        (root / "wnids.txt").write_text((root / "wnids.txt").read_text() + "../../../../etc\n")
    else:
        annotations = root / "val" / "val_annotations.txt"
        wnid = formats.TINY_WNIDS[0]
        annotations.write_text(f"../../../../etc/hostname\t{wnid}\t0\t0\t1\t1\n" + annotations.read_text())
    with pytest.raises(BenchmarkError) as err:
        sources.read_tiny_imagenet_official(exp.path)
    assert f"{where} names '../../../../etc" in _one_line(str(err.value))


# ------------------------------------------------------------------ 4. bounded inputs


def _png(width: int, height: int, path: Path) -> Path:
    """A valid 8-bit grayscale PNG of zeros, compressed row block by row block (a 400
    megapixel one is 400 kB on disk and takes 400 MB to decode)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp, idat = zlib.compressobj(9), []
    row_block = bytes(width + 1) * 1000
    for start in range(0, height, 1000):
        idat.append(comp.compress(row_block[: (width + 1) * min(1000, height - start)]))
    idat.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return _png(20000, 20000, tmp_path_factory.mktemp("bomb") / "bomb.png")


@pytest.mark.parametrize("extracted", [True, False], ids=["folder", "zip"])
def test_a_decompression_bomb_among_the_training_images_is_one_line(tmp_path, bomb, extracted):
    exp = formats.make_tiny_imagenet(tmp_path / "src", extracted=True)
    images = exp.path / "tiny-imagenet-200" / "train" / formats.TINY_WNIDS[0] / "images"
    victim = sorted(images.iterdir())[0]
    shutil.copyfile(bomb, victim)
    source = exp.path
    if not extracted:
        source = Path(shutil.make_archive(str(tmp_path / "tiny-imagenet-200"), "zip", exp.path))
    started = time.monotonic()
    with pytest.raises(BenchmarkError) as err:
        sources.read_tiny_imagenet_official(source)
    line = _one_line(str(err.value))
    assert victim.name in line and "not a 64x64 image" in line and "refused undecoded" in line
    assert time.monotonic() - started < 20


def test_an_oversized_image_is_refused_from_its_header(tmp_path):
    png = _png(96, 96, tmp_path / "x.png").read_bytes()
    with pytest.raises(BenchmarkError, match=r"image is 96x96, expected 64x64"):
        sources._decode_rgb(png, 64, "x.png")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class _Handler(http.server.BaseHTTPRequestHandler):
    seen_auth: list[str | None] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802  (http.server's name)
        _Handler.seen_auth.append(self.headers.get("Authorization"))
        if self.path.startswith("/big"):
            self.send_response(200)
            self.send_header("Content-Length", str(10 << 20))
            self.end_headers()
            self.wfile.write(bytes(1 << 16))
        elif self.path.startswith("/endless"):
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(bytes(1 << 16))
            except OSError:
                pass
        elif self.path.startswith("/slow"):
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(600):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        elif self.path.startswith("/ok"):
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture(scope="module")
def server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.mark.parametrize(
    ("path", "limits", "expected"),
    [
        ("/big", {"max_bytes": 1 << 20}, "announces 10485760 bytes, more than the 1048576"),
        ("/endless", {"max_bytes": 1 << 20}, "sent more than the 1048576 bytes"),
        ("/slow", {"deadline_s": 1.0}, "took longer than 1 s"),
    ],
)
def test_downloads_have_a_size_cap_and_a_deadline(tmp_path, server, path, limits, expected):
    dest = tmp_path / "raw" / "cifar-10-python.tar.gz"
    started = time.monotonic()
    with pytest.raises(BenchmarkError) as err:
        sources.download(server + path, dest, None, "hint", **limits)
    assert expected in _one_line(str(err.value))
    assert time.monotonic() - started < 15
    assert list(dest.parent.iterdir()) == []  # nothing kept, no .part


def test_the_official_archives_have_their_cap():
    assert sources.OFFICIAL_SIZES["cifar-10-python.tar.gz"] == 170_498_071


def test_the_sweep_walk_stays_inside_and_survives_a_link_loop(tmp_path):
    from runs import make_run

    from benchmark.analysis.runs import find_run_dirs
    from benchmark.sweep import status

    sweep = tmp_path / "sweep"
    run = make_run(sweep, "pytorch", "cifar10", "resnet50", "fp32", 42)
    make_run(tmp_path / "unrelated" / "deep", "keras", "cifar10", "resnet50", "fp32", 7)
    (sweep / "root").symlink_to("/", target_is_directory=True)
    (sweep / "up").symlink_to(tmp_path, target_is_directory=True)  # unrelated runs one level up
    (sweep / "loop").symlink_to(sweep, target_is_directory=True)
    (sweep / "a").mkdir()
    (sweep / "a" / "back").symlink_to("..", target_is_directory=True)
    started = time.monotonic()
    assert find_run_dirs(sweep) == [run]
    assert [r.run for r in status.collect(sweep)] == [str(run.relative_to(sweep))]
    assert time.monotonic() - started < 10


def test_status_reads_no_device_behind_a_planted_link(tmp_path):
    from runs import make_run

    from benchmark.sweep import status

    sweep = tmp_path / "sweep"
    run = make_run(sweep, "pytorch", "cifar10", "resnet50", "fp32", 42)
    (run / "status.json").unlink()
    (run / "status.json").symlink_to("/dev/zero")
    (run / LOCK_NAME).symlink_to("/dev/zero")
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").symlink_to("/dev/zero")
    assert read_json(run / "status.json") is None
    assert status.lock_is_held(run) is None
    assert len(status.collect(sweep)) == 1


# ------------------------------------------------------------------ 5. private job files

OTHER_USER = "benchmark-other"


def _cannot(why: str) -> None:
    """Skip a test this machine cannot run, except in CI (`CI` set), where it must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{why}, and CI must run this test")
    pytest.skip(why)


@pytest.fixture(scope="module")
def other_user() -> pwd.struct_passwd:
    """A second Unix user (the machine runs the tests as root)."""
    if os.geteuid() != 0 or not shutil.which("useradd"):
        # CI runs as root: there a missing second user is a failure, never a skip
        _cannot("needs root and useradd to create a second user")
    try:
        return pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", OTHER_USER], check=True)
        return pwd.getpwnam(OTHER_USER)


def _as(user: pwd.struct_passwd, script: str) -> subprocess.CompletedProcess:
    def drop():
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return subprocess.run(["/bin/sh", "-c", script], preexec_fn=drop, capture_output=True, text=True, timeout=30)


def test_submitits_folder_is_private_to_the_submitter(tmp_path, other_user):
    from hydra_plugins.benchmark_sweeper.slurm_launcher import private_job_folder

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    os.chmod(tmp_path, 0o755)  # noqa: S103  the second user must reach the sweep
    os.chmod(sweep, 0o777)  # noqa: S103  a shared sweep directory, on purpose
    folder = private_job_folder(f"{sweep}/.submitit/me/%j")
    assert folder == sweep / ".submitit" / "me"
    assert folder.stat().st_mode & 0o777 == 0o700 and folder.stat().st_uid == os.geteuid()
    planted = _as(other_user, f"echo evil > {shlex.quote(str(folder / '1_submitted.pkl'))}")
    assert planted.returncode != 0 and "Permission denied" in planted.stderr
    assert not (folder / "1_submitted.pkl").exists()
    # the other user cannot swap it for their own either (the sticky bit on the shared parent)
    assert (sweep / ".submitit").stat().st_mode & 0o1000 or not (sweep / ".submitit").stat().st_mode & 0o022
    swapped = _as(other_user, f"mv {shlex.quote(str(folder))} {shlex.quote(str(sweep / '.submitit' / 'x'))}")
    assert swapped.returncode != 0 and folder.is_dir()


def test_the_folders_above_submitits_cannot_be_swapped(tmp_path, other_user, capsys, caplog):
    """Renaming any folder above the job files would let a colleague put their own in its
    place: the sweep directory (ours) gets the sticky bit, so the second user cannot move
    .submitit away; a shared folder above it that is not ours and not sticky is refused."""
    from hydra_plugins.benchmark_sweeper.slurm_launcher import private_job_folder

    os.chmod(tmp_path, 0o755)  # noqa: S103  the second user must reach the sweep
    sweep = tmp_path / "sweep"
    sweep.mkdir(mode=0o777)
    os.chmod(sweep, 0o777)  # noqa: S103  a shared sweep directory, on purpose
    private_job_folder(f"{sweep}/.submitit/me/%j")
    assert sweep.stat().st_mode & 0o1000  # sticky: others create in it, never rename what is ours
    moved = _as(other_user, f"mv {shlex.quote(str(sweep / '.submitit'))} {shlex.quote(str(sweep / 'x'))}")
    assert moved.returncode != 0 and (sweep / ".submitit" / "me").is_dir()

    shared = tmp_path / "lab"
    shared.mkdir()
    os.chown(shared, other_user.pw_uid, other_user.pw_gid)
    os.chmod(shared, 0o777)  # noqa: S103  a colleague's folder anyone may write in, without the sticky bit
    (shared / "sweep").mkdir()
    os.chmod(shared / "sweep", 0o777)  # noqa: S103  ours and open: it would get the sticky bit if accepted
    with pytest.raises(SystemExit) as stop:
        private_job_folder(f"{shared}/sweep/.submitit/me/%j")
    assert stop.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{shared} is writable by anyone without the sticky bit" in line and "nothing was submitted" in line
    assert not (shared / "sweep").stat().st_mode & 0o1000  # refused before anything was changed
    # writable by its group only (every checkout under umask 002): a warning, not a refusal
    os.chmod(shared, 0o775)  # noqa: S103  group-writable on purpose
    with caplog.at_level(logging.WARNING):
        assert private_job_folder(f"{shared}/sweep/.submitit/me/%j") == shared / "sweep" / ".submitit" / "me"
    assert f"{shared}: writable by its group without the sticky bit" in caplog.text


def test_submitits_folder_of_someone_else_is_refused(tmp_path, other_user, capsys):
    from hydra_plugins.benchmark_sweeper.slurm_launcher import private_job_folder

    sweep = tmp_path / "sweep"
    folder = sweep / ".submitit" / "me"
    folder.mkdir(parents=True, mode=0o700)
    planted = _precious(folder / "1_submitted.pkl")
    os.chown(planted, other_user.pw_uid, other_user.pw_gid)
    os.chown(folder, other_user.pw_uid, other_user.pw_gid)
    with pytest.raises(SystemExit) as stop:
        private_job_folder(f"{folder}/%j")
    assert stop.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert f"belongs to uid {other_user.pw_uid}, not to you" in line and "nothing was submitted" in line
    assert planted.read_text() == PRECIOUS
    os.chown(folder, os.geteuid(), os.getegid())
    folder.chmod(0o770)
    with pytest.raises(SystemExit):
        private_job_folder(f"{folder}/%j")
    assert "is open to others (mode 770, must be 700)" in capsys.readouterr().err


@pytest.mark.cli
def test_a_slurm_sweep_refuses_a_job_folder_planted_by_another_user(tmp_path, other_user, data_dir):
    """The real command with the slurm_a40 launcher: refused before anything is submitted
    (no cluster needed for that; tests/test_slurm.py runs sweeps in the private folder)."""
    sweep = tmp_path / "sweep"
    folder = sweep / ".submitit" / pwd.getpwuid(os.geteuid()).pw_name
    folder.mkdir(parents=True)
    planted = _precious(folder / "1_submitted.pkl")
    for path in (folder, planted):
        os.chown(path, other_user.pw_uid, other_user.pw_gid)
    out = run_cli(
        "--multirun",
        "hydra/launcher=slurm_a40",
        "seed=1",
        *SMOKE_RUN,
        f"hydra.sweep.dir={sweep}",
        f"data_dir={data_dir}",
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "belongs to uid" in out.stderr and "nothing was submitted" in out.stderr
    assert planted.read_text() == PRECIOUS and not (sweep / "slurm_jobs.json").exists()


# ------------------------------------------------------------------ 6. secrets stay out of files


def test_urls_are_redacted():
    assert redact_url("see http://user:t0k3n@host/a.tar.gz?sig=abc&x=1") == "see http://***@host/a.tar.gz?sig=***&x=***"


def test_a_download_sends_netrc_credentials_and_never_writes_the_urls(tmp_path, server, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine 127.0.0.1 login alice password n3trc\n")
    (home / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    _Handler.seen_auth.clear()
    sources.download(server + "/ok", tmp_path / "ok.bin", None, "hint")
    assert _Handler.seen_auth == ["Basic YWxpY2U6bjN0cmM="]  # alice:n3trc
    with pytest.raises(BenchmarkError) as err:
        sources.download(server.replace("//", "//bob:s3cret@") + "/missing?token=t0k", tmp_path / "x.bin", None, "hint")
    line = _one_line(str(err.value))
    assert "s3cret" not in line and "t0k" not in line and "//***@127.0.0.1" in line


@pytest.mark.cli
def test_credentials_in_the_url_stay_out_of_what_the_run_writes(tmp_path, data_dir):
    run = tmp_path / "run"
    out = run_cli(
        *SMOKE_RUN,
        # secrets long enough that no checkpoint's random bytes hold them by chance
        "dataset.url='https://user:s3cret-Hq7Zp2Lw@example.org/digits.tgz?token=t0k-Vn4Rx8Kc'",
        f"hydra.run.dir={run}",
        f"data_dir={data_dir}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "holds credentials or a query token" in out.stdout + out.stderr and "~/.netrc" in out.stdout + out.stderr
    written = {p.relative_to(run): p for p in run.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    assert {Path(n) for n in ("run.log", "status.json", "summary.json", "env.json", "config_resolved.yaml")} <= set(
        written
    )
    for rel, path in written.items():
        data = path.read_bytes()
        assert b"s3cret-Hq7Zp2Lw" not in data and b"t0k-Vn4Rx8Kc" not in data, rel
    assert "https://***@example.org/digits.tgz?token=***" in (run / "summary.json").read_text()


# ------------------------------------------------------------------ 7. the local SLURM script

SCRIPT = REPO / "scripts" / "slurm-local.sh"


@pytest.mark.cli
def test_the_slurm_script_signals_only_daemons_it_started(tmp_path):
    """In a PID namespace of its own, so that a broken check could not signal the machine:
    `down` finds PID files holding -1, 0, junk, and the PID of a process it did not start."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        _cannot("needs root and unshare")
    local = tmp_path / "slurm"
    (local / "run").mkdir(parents=True)
    local.chmod(0o700)
    script = f"""
        sleep 300 & bystander=$!
        echo -1 > {local}/run/slurmd.pid
        echo 0 > {local}/run/slurmctld.pid
        echo '1; kill -9 1' > {local}/run/slurmdbd.pid
        echo $bystander > {local}/run/munged.pid
        ln -s /proc/self/stat {local}/run/mysqld.pid
        SLURM_LOCAL_DIR={local} bash {SCRIPT} down
        echo "down exit $?"
        kill -0 $bystander && echo "bystander alive"
        kill $bystander
    """
    out = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "down exit 0" in out.stdout and "bystander alive" in out.stdout, out.stdout + out.stderr


@pytest.mark.cli
@pytest.mark.parametrize("kind", ["world-writable", "link"])
def test_the_slurm_script_refuses_a_directory_not_its_own(tmp_path, kind):
    local = tmp_path / "slurm"
    if kind == "link":
        (tmp_path / "elsewhere").mkdir()
        local.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    else:
        local.mkdir()
        local.chmod(0o777)
    _precious(tmp_path / "elsewhere" / "keep") if kind == "link" else _precious(local / "keep")
    out = subprocess.run(
        ["bash", str(SCRIPT), "up"],
        env={**os.environ, "SLURM_LOCAL_DIR": str(local)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "is not a private directory of yours" in out.stderr
    kept = tmp_path / "elsewhere" / "keep" if kind == "link" else local / "keep"
    assert kept.read_text() == PRECIOUS


def test_the_slurm_script_defaults_to_a_private_mktemp_directory():
    text = SCRIPT.read_text()
    assert "/tmp/benchmark-slurm}" not in text  # noqa: S108  the old fixed default, looked for and "mktemp -d /tmp/benchmark-slurm.XXXXXXXX" in text
