"""Operating a sweep: live status, TensorBoard scalars, time to accuracy, the recorded environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from helpers import REPO
from scipy import stats as scipy_stats

from benchmark.analysis.stats import censored_statistics, metric_for
from benchmark.analysis.summary import sentence
from benchmark.analysis.time_to_accuracy import columns, time_to_accuracy
from benchmark.files import write_json
from benchmark.run.rundir import RunDir
from benchmark.run.tensorboard import TensorBoardLog, scalars
from benchmark.sweep.status import NOT_STARTED, STALLED, collect, render

# ------------------------------------------------------------------ time to accuracy


def _metrics(accuracies, seconds=10.0):
    n = len(accuracies)
    return pd.DataFrame({"epoch": range(1, n + 1), "val_accuracy": accuracies, "epoch_time_seconds": [seconds] * n})


def test_time_to_accuracy_is_the_first_epoch_and_the_training_seconds_up_to_it():
    metrics = _metrics([0.5, 0.86, 0.84, 0.95], seconds=12.5)
    out = time_to_accuracy(metrics, (0.85, 0.9, 0.99), completed=True)
    assert out[columns(0.85)[0]] == 2 and out[columns(0.85)[1]] == pytest.approx(25.0)
    assert out[columns(0.9)[0]] == 4 and out[columns(0.9)[1]] == pytest.approx(50.0)
    assert np.isinf(out[columns(0.99)[0]]) and np.isinf(out[columns(0.99)[1]])  # never, within a finished run
    running = time_to_accuracy(metrics, (0.99,), completed=False)
    assert all(np.isnan(v) for v in running.values())  # not yet: it may still get there


def test_a_target_one_arm_never_reached_is_ranked_not_dropped():
    a = np.array([30.0, 31.0, 29.0, 33.0, np.inf, np.inf])  # A never reached it twice
    b = np.array([20.0, 22.0, 25.0, 21.0, 24.0, np.inf])
    row = censored_statistics(a, b)
    assert row["n_pairs"] == 6 and row["delta"] == pytest.approx(np.mean(a[:4] - b[:4]))
    # the censored pair ranks above the finite ones, in B's favour; the pair neither reached is a tie
    ranked = np.array([10.0, 9.0, 4.0, 12.0, 1000.0])
    assert row["wilcoxon_p"] == pytest.approx(scipy_stats.wilcoxon(ranked, method="exact").pvalue)
    assert row["cliffs_delta"] > 0.5
    assert "1 pair where only the second arm reached the target" in row["note"]
    assert "1 pair where neither did" in row["note"] and "use the 4 where both" in row["note"]

    only_b = censored_statistics(np.full(6, np.inf), np.arange(6.0) + 10)
    assert np.isnan(only_b["delta"]) and only_b["wilcoxon_p"] == pytest.approx(2 / 2**6)
    text = sentence(
        {
            **only_b,
            "metric": "seconds_to_val_acc_0.9",
            "arm_a": "keras",
            "arm_b": "pytorch",
            "holm_p": only_b["wilcoxon_p"],
        }
    )
    assert text.startswith("In no pair did both keras and pytorch reach the target")
    assert metric_for("seconds_to_val_acc_0.9").label == "training time to reach 90% val accuracy"


# ------------------------------------------------------------------ TensorBoard


def test_tensorboard_events_of_a_resumed_run_have_every_epoch_once(tmp_path):
    def row(epoch):
        return {
            "epoch": epoch,
            "train_loss": 1.0 / epoch,
            "train_accuracy": 0.1 * epoch,
            "val_loss": 2.0 / epoch,
            "val_accuracy": 0.2 * epoch,
            "val_macro_f1": 0.1 * epoch,
            "epoch_time_seconds": 3.0,
            "learning_rate": 0.01,
        }

    first = TensorBoardLog(tmp_path, epochs_done=0)
    for epoch in (1, 2, 3):
        first.add_epoch(row(epoch), images_per_sec=100.0)
    # killed (no close): the checkpoint holds epoch 1 only, so epochs 2 and 3 are trained again
    written = scalars(tmp_path)["accuracy/val"]
    assert [step for step, _ in written] == [1, 2, 3]
    resumed = TensorBoardLog(tmp_path, epochs_done=1)
    for epoch in (2, 3, 4):
        resumed.add_epoch({**row(epoch), "val_accuracy": 0.5}, images_per_sec=100.0)
    resumed.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    curves = scalars(tmp_path)
    assert curves["accuracy/val"] == [(1, pytest.approx(0.2)), (2, 0.5), (3, 0.5), (4, 0.5)]
    assert all([s for s, _ in points] == [1, 2, 3, 4] for points in curves.values())
    assert len(curves) == 8


@pytest.mark.cli
def test_the_neutral_core_writes_tensorboard_without_importing_a_framework(tmp_path):
    code = (
        "import sys; from pathlib import Path; import benchmark.run.loop; from benchmark.run.tensorboard import "
        "TensorBoardLog, scalars\n"
        f"log = TensorBoardLog(Path({str(tmp_path)!r}), 0)\n"
        "log.add_epoch(dict(epoch=1, train_loss=1, train_accuracy=0, val_loss=1, val_accuracy=0, val_macro_f1=0, "
        "epoch_time_seconds=1, learning_rate=0.1), 10.0); log.close()\n"
        f"assert scalars(Path({str(tmp_path)!r}))['loss/train'] == [(1, 1.0)]\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tensorflow', 'keras', 'jax'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ live status


def _run(sweep, name, state, epochs_done=0, epochs=10, **status):
    rd = RunDir(sweep / name)
    rd.root.mkdir(parents=True)
    write_json(rd.summary, {"epochs": epochs, "images_per_epoch": 1000})
    rows = [
        {
            "epoch": e,
            "train_loss": 1.0,
            "train_accuracy": 0.5,
            "val_loss": 1.0,
            "val_accuracy": 0.1 * e,
            "val_macro_f1": 0.1,
            "epoch_time_seconds": 2.0,
            "learning_rate": 0.01,
        }
        for e in range(1, epochs_done + 1)
    ]
    pd.DataFrame(
        rows,
        columns=[
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "val_macro_f1",
            "epoch_time_seconds",
            "learning_rate",
        ],
    ).to_csv(rd.metrics, index=False)
    rd.set_status(state, **status)
    if epochs_done:
        rd.set_progress(epoch=epochs_done, epochs=epochs, seconds_per_epoch=3.0, images_per_sec=500.0)
    (rd.root / "run.log").write_text("log\n")
    (rd.root / ".run.lock").touch()  # every launched run has one
    return rd


def test_status_tells_running_from_stalled_and_not_started(tmp_path):
    sweep = tmp_path / "sweep"
    live = _run(sweep, "live_seed1", "running", epochs_done=4)
    dead = _run(sweep, "dead_seed2", "running", epochs_done=2)  # its process was killed: nobody holds the lock
    _run(sweep, "done_seed3", "completed", epochs_done=10)
    (sweep / "done_seed3" / "test.json").write_text(json.dumps({"test_accuracy": 0.9}))
    write_json(
        sweep / "sweep_jobs.json",
        {"run_dirs": [str(sweep / n) for n in ("live_seed1", "dead_seed2", "done_seed3", "queued_seed4")]},
    )
    before = {p: p.stat().st_mtime_ns for p in sweep.rglob("*") if p.is_file()}
    with live.exclusive(wait_s=0):
        rows = {r.run: r for r in collect(sweep)}
        text = render(sweep, list(rows.values()))
    assert rows["live_seed1"].state == "running" and rows["live_seed1"].eta_seconds == pytest.approx(18.0)
    assert rows["live_seed1"].epoch == 4 and rows["live_seed1"].best_val_accuracy == pytest.approx(0.4)
    assert rows["dead_seed2"].state == STALLED and "no live process" in rows["dead_seed2"].note
    assert rows["done_seed3"].state == "completed" and rows["queued_seed4"].state == NOT_STARTED
    assert "4 runs: 1 running, 1 stalled, 1 not started, 1 completed" in text
    assert before == {p: p.stat().st_mtime_ns for p in sweep.rglob("*") if p.is_file()}  # read-only

    # a process that holds its run but writes nothing for longer than --stalled-after is stalled too
    old = time.time() - 3600
    for name in ("run.log", "metrics.csv", "status.json"):
        os.utime(live.root / name, (old, old))
    with live.exclusive(wait_s=0):
        quiet = {r.run: r for r in collect(sweep, stalled_after=600)}["live_seed1"]
    assert quiet.state == STALLED and quiet.note.startswith("no output for 1:00:00")
    # nothing trains any more: no ETA, and the way out
    assert "nothing in progress: launch the sweep again" in render(sweep, collect(sweep))
    assert dead.read_status()["state"] == "running"  # the status command never writes


@pytest.mark.cli
def test_status_cli_rejects_what_is_not_a_sweep(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmark.status", str(tmp_path / "nothing")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stderr.startswith("error:") and len(out.stderr.splitlines()) == 1


# ------------------------------------------------------------------ pinned environment


def _locked(path) -> dict[str, str]:
    """{name: version} of a lock file, checking that every entry carries a hash."""
    from packaging.utils import canonicalize_name

    pinned, lines = {}, path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and line[0].isalnum():
            name, _, version = line.split(" ")[0].partition("==")
            assert version and lines[i + 1].strip().startswith("--hash=sha256:"), line
            pinned[canonicalize_name(name.split("[")[0])] = version
    return pinned


@pytest.mark.parametrize("lock, extras", [("cpu.txt", ["test"]), ("cuda.txt", ["test", "cuda"])])
def test_the_locks_pin_every_dependency_with_hashes(lock, extras):
    """A dependency added to pyproject.toml without refreshing the locks (scripts/lock.sh) fails here."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = _locked(REPO / "requirements" / lock)
    wanted = [
        Requirement(r)
        for r in project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]
    ]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pinned and req.specifier.contains(pinned[name], prereleases=True), (lock, str(req))
    for line in (REPO / "requirements" / "pins.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            assert pinned[name] == version
