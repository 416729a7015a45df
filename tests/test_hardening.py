"""A hostile user and a flaky machine: bad values, damaged caches and run directories,
signals, a full disk, read-only data, shared sweep directories, the umask."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import REPO, compose, read_json, read_metrics, run_cli, run_main

from benchmark import BenchmarkError
from benchmark.data import prepare_dataset
from benchmark.spec.config import RANGES, _bound, check_values

TINY = ("debug=smoke",)  # one epoch of 128 images


def last_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def files_and_times(root: Path) -> dict:
    """Every file of a run directory and its mtime, but Hydra's own: .hydra/ (rewritten at
    each launch) and run.log (which records the refusal)."""
    return (
        {
            p: p.stat().st_mtime_ns
            for p in root.rglob("*")
            if p.is_file() and p.name != "run.log" and ".hydra" not in p.parts
        }
        if root.exists()
        else {}
    )


# ------------------------------------------------------------------ bad values


def _outside(rule, cfg):
    """A value just outside the rule's range."""
    low, high = _bound(cfg, rule.low), _bound(cfg, rule.high)
    if low != -float("inf"):
        value = low if rule.low_open else low - 1
    else:
        value = high if rule.high_open else high + 1
    value = int(value) if rule.integer else value
    current = compose()
    from omegaconf import OmegaConf

    is_list = OmegaConf.is_list(OmegaConf.select(current, rule.key)) or rule.key.endswith(("mean", "std", "targets"))
    return f"[{value},{value},{value}]" if is_list else str(value)


@pytest.mark.parametrize("rule", RANGES, ids=[r.key for r in RANGES])
def test_every_numeric_option_is_range_checked(rule):
    cfg = compose()
    cfg = compose(f"{rule.key}={_outside(rule, cfg)}")
    with pytest.raises(BenchmarkError) as err:
        check_values(cfg)
    message = str(err.value)
    assert message.startswith(f"{rule.key}=") and " is out of range: valid " in message and "\n" not in message


@pytest.mark.parametrize(
    "override",
    [
        "seed=4294967296",
        "optim.momentum=1",
        "optim.lr=nan",
        "optim.lr=inf",
        "dataset.crop_padding=32",
        "optim.warmup_epochs=11",
    ],
)
def test_the_other_end_and_non_finite_values_are_refused(override):
    with pytest.raises(BenchmarkError, match=f"^{override.split('=')[0]}="):
        check_values(compose(override))


@pytest.mark.cli
def test_bad_values_are_one_line_exit_2_and_nothing_written(tmp_path, data_dir):
    """Before Hydra creates anything: the run directory (and a sweep's) never appears."""
    cases = [
        ("seed=-1", f"hydra.run.dir={tmp_path / 'run'}"),
        ("optim.lr=-0.1", "framework=keras", f"hydra.run.dir={tmp_path / 'run'}"),
        ("--multirun", "seed=1,-1", f"hydra.sweep.dir={tmp_path / 'sweep'}"),
        (f"data_dir={REPO / 'README.md'}", f"hydra.run.dir={tmp_path / 'run'}"),
        (f"hydra.run.dir={REPO / 'README.md'}",),
    ]
    for i, args in enumerate(cases):
        data = () if any(a.startswith("data_dir") for a in args) else (f"data_dir={data_dir}",)
        if i == 0 or "--multirun" in args:  # a run's and a sweep's own process once; the rest in this one
            proc = run_cli(*args, *data)
            code, stderr = proc.returncode, proc.stderr
        else:
            code, _, stderr = run_main(*args, *data)
        assert code == 2, (args, stderr[-1500:])
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "Traceback" not in stderr, stderr[-1500:]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ the cache


def _prepared_copy(data_dir: Path, tmp_path: Path) -> Path:
    prepare_dataset(compose().dataset, data_dir)
    copy = tmp_path / "data"
    shutil.copytree(data_dir / "cache", copy / "cache")
    return copy


def test_a_damaged_cache_is_one_line_naming_it(tmp_path, data_dir):
    ds = compose().dataset
    damages = {
        "same-size change": lambda c: _flip_a_byte(c / "train_x.npy"),
        "truncated": lambda c: (c / "train_x.npy").write_bytes((c / "train_x.npy").read_bytes()[:-100]),
        "split deleted": lambda c: (c / "val_idx.npy").unlink(),
        "meta unparsable": lambda c: (c / "meta.json").write_text("{not json"),
    }
    for name, damage in damages.items():
        root = _prepared_copy(data_dir, tmp_path / name.replace(" ", "_"))
        damage(root / "cache" / "digits")
        with pytest.raises(BenchmarkError) as err:
            prepare_dataset(ds, root)
        text = str(err.value)
        assert text.startswith(f"the cache {root / 'cache' / 'digits'} is damaged"), (name, text)
        assert f"delete {root / 'cache' / 'digits'} and launch again to rebuild it" in text
        shutil.rmtree(root / "cache" / "digits")  # as the message says: it is rebuilt
        assert prepare_dataset(ds, root).fingerprint == prepare_dataset(ds, data_dir).fingerprint


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@contextmanager
def read_only(path: Path):
    """`path` on a read-only mount (root ignores permission bits), else without write permission."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(path)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)


@pytest.mark.cli
def test_a_read_only_data_dir_trains_from_its_prepared_cache(tmp_path, data_dir):
    shared = _prepared_copy(data_dir, tmp_path / "prepared")
    mask = os.umask(0o022)
    os.umask(mask)
    cache = data_dir / "cache" / "digits"  # prepared by this session: modes follow the umask
    assert stat.S_IMODE(cache.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((cache / "meta.json").stat().st_mode) == 0o666 & ~mask
    empty = tmp_path / "empty"
    empty.mkdir()
    with read_only(shared), read_only(empty):
        ok = run_cli(*TINY, f"data_dir={shared}", f"hydra.run.dir={tmp_path / 'run'}")
        assert ok.returncode == 0, ok.stderr[-2000:]
        refused = run_cli(*TINY, f"data_dir={empty}", f"hydra.run.dir={tmp_path / 'run2'}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert last_line(refused).startswith(f"error: data_dir={empty} is read-only and holds no prepared digits cache")


# ------------------------------------------------------------------ signals, a full disk, damaged run directories


def _start(run_dir: Path, data_dir: Path, *args: str, limit_file_size: int | None = None) -> subprocess.Popen:
    def limit():
        if limit_file_size:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    return subprocess.Popen(
        [sys.executable, "-m", "benchmark", *args, f"hydra.run.dir={run_dir}", f"data_dir={data_dir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
    )


def _wait_for(run_dir: Path, text: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "run.log").exists() and text in (run_dir / "run.log").read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {text!r} (exit {proc.poll()})")


@pytest.mark.slow
@pytest.mark.cli
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_leaves_an_interrupted_run_that_resumes(tmp_path, data_dir, sig, code):
    args = ("debug=smoke", "epochs=2", "optim.warmup_epochs=1", "limit.train=256")
    run_dir = tmp_path / "run"
    proc = _start(run_dir, data_dir, *args)
    _wait_for(run_dir, "epoch 2/2  step", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code and "Traceback" not in err, err[-2000:]
    status = read_json(run_dir / "status.json")
    assert status["state"] == "interrupted" and status["signal"] == sig.name and status["last_epoch"] == 1
    assert err.strip().splitlines()[-1].endswith(f"interrupted by {sig.name} after epoch 1; launch it again to resume")
    out = subprocess.run(
        [sys.executable, "-m", "benchmark.status", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    ).stdout
    assert "interrupted" in out.splitlines()[2]
    if sig == signal.SIGINT:
        return  # resuming an interrupted run is the same whichever signal it was
    resumed = run_cli(*args, f"hydra.run.dir={run_dir}", f"data_dir={data_dir}")
    assert resumed.returncode == 0 and "resuming after epoch 1" in resumed.stdout
    assert read_json(run_dir / "status.json")["state"] == "completed"


@pytest.mark.slow
@pytest.mark.cli
def test_a_full_disk_fails_in_one_line_keeps_the_checkpoint_and_the_history_is_guarded(tmp_path, data_dir):
    args = ("debug=smoke", "epochs=2", "optim.warmup_epochs=1", "limit.train=256")
    run_dir = tmp_path / "run"
    proc = _start(run_dir, data_dir, *args)
    _wait_for(run_dir, "epoch 2/2  step", proc)
    proc.kill()  # after epoch 1: a resumable run
    proc.wait(timeout=60)
    last = run_dir / "checkpoints" / "last.pt"
    before = hashlib.sha256(last.read_bytes()).hexdigest()
    # files follow the umask (022 here): a lab's colleagues can read the run
    old_umask = os.umask(0o022)
    os.umask(old_umask)
    for name in ("metrics.csv", "status.json", "summary.json", "env.json", "checkpoints/last.pt"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o666 & ~old_umask, name

    for case, damage in {
        "status is a JSON string": lambda d: (d / "status.json").write_text('"running"'),
        "metrics lost": lambda d: (d / "metrics.csv").unlink(),
        "metrics not csv": lambda d: (d / "metrics.csv").write_bytes(b"\x00\xffgarbage"),
    }.items():
        damaged = tmp_path / case.replace(" ", "_")
        shutil.copytree(run_dir, damaged)
        damage(damaged)
        untouched = files_and_times(damaged)
        proc_damaged = run_cli(*args, f"hydra.run.dir={damaged}", f"data_dir={data_dir}")
        assert proc_damaged.returncode == 2 and "Traceback" not in proc_damaged.stderr, (
            case,
            proc_damaged.stderr[-2000:],
        )
        assert " is damaged" in last_line(proc_damaged) or " lacks epoch(s) 1 " in last_line(proc_damaged), case
        assert files_and_times(damaged) == untouched, case  # refused before anything was written

    # the disk fills up: the checkpoint save of epoch 2 fails (each file may hold 1 MB)
    full = _start(run_dir, data_dir, *args, limit_file_size=1 << 20)
    _, err = full.communicate(timeout=300)
    assert full.returncode == 2 and "Traceback" not in err, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: cannot write ") and "File too large" in line and "resumes from it" in line
    assert hashlib.sha256(last.read_bytes()).hexdigest() == before  # the previous checkpoint is intact
    assert not [p.name for p in run_dir.rglob(".*.tmp")]  # no partial file keeps the disk full
    assert read_json(run_dir / "status.json")["state"] == "failed"
    assert "File too large" in read_json(run_dir / "status.json")["reason"]
    again = run_cli(*args, f"hydra.run.dir={run_dir}", f"data_dir={data_dir}")  # space again: it resumes
    assert again.returncode == 0 and "resuming after epoch 1" in again.stdout
    assert [row["epoch"] for row in read_metrics(run_dir)] == ["1", "2"]


# ------------------------------------------------------------------ shared sweep directories


@pytest.mark.slow
@pytest.mark.cli
def test_two_sweeps_share_one_directory(tmp_path, data_dir):
    sweep = tmp_path / "matrix"
    common = ("--multirun", *TINY, f"hydra.sweep.dir={sweep}", f"data_dir={data_dir}")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmark", *common, f"seed={seed}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in ("1,2", "2")
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[-2000:] for o in outs]
    lists = sorted((sweep / ".sweeps").glob("*.json"))
    assert len(lists) == 2  # one job list per launch
    assert sorted(len(json.loads(f.read_text())["run_dirs"]) for f in lists) == [1, 2]
    status = (sweep / "sweep_status.csv").read_text()
    assert all(f"seed{s}" in status for s in (1, 2)) and status.count("completed") == 2
    both = next(sweep.glob("pytorch_digits_mobilenetv2_fp32_seed2/*"))  # listed by both sweeps
    assert (both / "run.log").read_text().count("test (best epoch") == 1  # trained once
    assert len(read_metrics(both)) == 1


# ------------------------------------------------------------------ Hydra's directories, the console command


@pytest.mark.slow
@pytest.mark.cli
def test_any_sweep_subdir_and_hydra_overrides_reach_the_job(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "--multirun",
        *TINY,
        "seed=1,2",
        "hydra.sweep.subdir=${hydra.job.num}",
        "hydra.job.name=custom",
        "hydra.job.chdir=true",
        f"hydra.sweep.dir={sweep}",
        f"data_dir={data_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for num, seed in ((0, 1), (1, 2)):
        assert read_json(sweep / str(num) / "summary.json")["seed"] == seed
        hydra = (sweep / str(num) / ".hydra" / "hydra.yaml").read_text()
        assert "mode: MULTIRUN" in hydra and f"num: {num}" in hydra and "name: custom" in hydra
        assert (sweep / str(num) / "custom.log").is_file()


@pytest.mark.cli
def test_the_benchmark_command_and_its_shell_completion():
    command = Path(sys.executable).parent / "benchmark"
    assert command.is_file(), "pip install -e . installs the `benchmark` command"
    helped = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "framework: keras, keras_jax, keras_torch, pytorch" in helped.stdout
    env = {**os.environ, "COMP_LINE": "benchmark framework=", "COMP_POINT": "20"}
    query = subprocess.run([str(command), "-sc", "query=bash"], capture_output=True, text=True, timeout=120, env=env)
    assert set(query.stdout.split()) >= {"framework=keras", "framework=keras_jax", "framework=pytorch"}, (
        query.stdout + query.stderr
    )
