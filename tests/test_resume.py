"""A run killed mid-epoch and launched again into its directory ends as if never stopped."""

import json
import shutil
import subprocess
import sys
import time

import pytest
from helpers import (
    REPO,
    SMOKE_RUN,
    assert_same_run,
    copy_run,
    read_json,
    read_metrics,
    run_cli,
    sigkill_when_logged,
    without_timing,
)

from benchmark.run.tensorboard import TAGS, TIMING_TAGS, scalars

pytestmark = pytest.mark.cli
# 16 steps an epoch (room to kill in one), and a warm-up epoch: the resumed scheduler is past its milestone
ARGS = ("debug=smoke", "epochs=3", "optim.warmup_epochs=1", "limit.train=512", "seed=5")


def test_an_unfinished_run_resumes_from_its_last_checkpoint(tmp_path, data_dir, trained_run):
    """The fast tier's resume: a run whose process died after its last checkpoint (no
    status, no test result) is continued, not redone: it restores the weights, the
    optimizer and the scheduler, and tests exactly as the uninterrupted run did."""
    reference = trained_run("pytorch")[0]
    run_dir = copy_run(reference, tmp_path / "run")
    for name in ("status.json", "test.json"):
        (run_dir / name).unlink()
    out = run_cli(*SMOKE_RUN, f"hydra.run.dir={run_dir}", f"data_dir={data_dir}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming after epoch 2" in out.stdout and "epoch 1/2" not in out.stdout  # nothing trained again
    assert_same_run(run_dir, reference)
    assert read_json(run_dir / "status.json")["state"] == "completed"


def test_unreadable_checkpoint_is_a_one_line_error(tmp_path, data_dir, trained_run):
    run_dir = copy_run(trained_run("pytorch")[0], tmp_path / "run")
    args = (*SMOKE_RUN, f"hydra.run.dir={run_dir}", f"data_dir={data_dir}")
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    (run_dir / "status.json").unlink()  # as if the node died before the run could finish
    out = run_cli(*args)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "last.pt cannot be read" in last


def test_a_run_does_not_resume_on_other_data(tmp_path, data_dir, trained_run):
    """A run that started on one cache (say the Tiny-ImageNet zip) is not continued on a
    cache rebuilt from another source: other image order, other splits."""
    run_dir = copy_run(trained_run("pytorch")[0], tmp_path / "run")
    args = (*SMOKE_RUN, f"hydra.run.dir={run_dir}", f"data_dir={data_dir}")
    summary = read_json(run_dir / "summary.json")
    (run_dir / "summary.json").write_text(json.dumps({**summary, "data_fingerprint": "sha256:0123456789abcdef"}))
    (run_dir / "status.json").unlink()  # unfinished, so it would resume
    out = run_cli(*args)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "started on other digits data (fingerprint sha256:0123456789abcdef)" in last
    assert summary["data_fingerprint"] in last
    assert read_json(run_dir / "status.json")["state"] == "failed"
    # with no checkpoint to resume from, the run starts afresh on the data there is
    shutil.rmtree(run_dir / "checkpoints")
    assert run_cli(*args).returncode == 0
    assert read_json(run_dir / "summary.json")["data_fingerprint"] == summary["data_fingerprint"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, data_dir):
    reference = tmp_path / "reference"
    assert run_cli(*ARGS, f"hydra.run.dir={reference}", f"data_dir={data_dir}").returncode == 0

    run_dir = tmp_path / "killed"
    sigkill_when_logged(run_dir, "epoch 2/3  step 4/16", *ARGS, f"data_dir={data_dir}")
    assert read_json(run_dir / "status.json")["state"] == "running"
    assert len(read_metrics(run_dir)) == 1  # killed inside epoch 2
    status = subprocess.run(
        [sys.executable, "-m", "benchmark.status", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    killed = next(line for line in status.stdout.splitlines() if line.startswith("killed "))
    assert killed.split()[1:3] == ["stalled", "1/3"], status.stdout  # not "running": nothing trains it

    resumed = run_cli(*ARGS, f"hydra.run.dir={run_dir}", f"data_dir={data_dir}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 1" in resumed.stdout
    assert_same_run(run_dir, reference)
    assert read_json(run_dir / "status.json")["state"] == "completed"
    # the TensorBoard curves continue: every epoch once, the values of metrics.csv
    curves = scalars(run_dir)
    assert {tag: [step for step, _ in points] for tag, points in curves.items()} == {
        tag: [1, 2, 3] for tag in [*TAGS.values(), *TIMING_TAGS.values()]
    }
    assert [value for _, value in curves["accuracy/val"]] == pytest.approx(
        [float(row["val_accuracy"]) for row in read_metrics(run_dir)]
    )


def test_a_second_launch_of_a_live_run_waits_for_it_then_skips(tmp_path, data_dir):
    """A run launched again while its first process still trains (a sweep relaunched while
    its SLURM jobs run) never trains alongside it: it waits, then skips the finished run,
    or refuses when the wait runs out."""
    run_dir = tmp_path / "run"
    # long enough (4 epochs of 32 steps) to outlast the start of two more processes on a
    # loaded machine; the default wait (2 minutes) outlasts it
    args = (
        "debug=smoke",
        "epochs=4",
        "limit.train=1024",
        f"hydra.run.dir={run_dir}",
        f"data_dir={data_dir}",
    )
    first = subprocess.Popen(
        [sys.executable, "-m", "benchmark", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (
        (run_dir / "run.log").exists() and "epoch 1/4  step" in (run_dir / "run.log").read_text()
    ):
        time.sleep(0.05)

    refused = run_cli(*args, env={"BENCHMARK_RUN_LOCK_WAIT": "1"})
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and f"is being trained by another process (pid {first.pid} on " in last

    waited = run_cli(*args)  # the default wait outlasts the first run
    assert waited.returncode == 0, waited.stderr[-2000:]
    assert "waiting up to" in waited.stdout and "skipped:" in waited.stdout
    assert first.wait(timeout=300) == 0
    assert [row["epoch"] for row in read_metrics(run_dir)] == ["1", "2", "3", "4"]
    assert read_json(run_dir / "status.json")["state"] == "completed"


def test_killed_between_the_first_best_and_last_saves_starts_afresh(tmp_path, data_dir, trained_run):
    """Epoch 1 saves `best`, then `last`; killed in between, the run has nothing to resume
    and must not start from the best weights with a fresh optimizer."""
    args = (*SMOKE_RUN, f"data_dir={data_dir}")
    reference = trained_run("pytorch")[0]
    run_dir = copy_run(reference, tmp_path / "run")
    for name in ("checkpoints/last.pt", "metrics.csv", "test.json", "status.json"):
        (run_dir / name).unlink()  # what a kill right after the first best save leaves
    assert run_cli(*args, f"hydra.run.dir={run_dir}").returncode == 0
    assert without_timing(read_metrics(run_dir)) == without_timing(read_metrics(reference))
