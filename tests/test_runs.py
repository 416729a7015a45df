"""End-to-end runs through the real CLI on the real digits data (PyTorch; both backends for determinism)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, SMOKE_RUN, compose, read_json, read_metrics, run_cli, without_timing

from benchmark.run.metrics import METRICS_COLUMNS
from benchmark.run.tensorboard import TAGS, TIMING_TAGS, scalars
from benchmark.spec.schedule import make_schedule

SLICE = SMOKE_RUN  # 128 training images (4 steps of 32), 64 val, 64 test, 2 epochs, 1 of warm-up


def small_run(run_dir, data_dir, *overrides):
    result = run_cli(*SLICE, f"hydra.run.dir={run_dir}", f"data_dir={data_dir}", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.cli
def test_two_epoch_run_writes_the_run_directory_contract(trained_run, data_dir):
    run_dir, result = trained_run("pytorch")
    # progress inside each epoch plus one summary line per epoch
    assert "epoch 1/2  step" in result.stdout and "epoch 2/2  train_loss" in result.stdout

    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        assert (run_dir / ".hydra" / name).is_file()
    resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    assert resolved["epochs"] == 2 and resolved["optim"]["warmup_epochs"] == 1 and resolved["batch_size"] == 32
    assert resolved["data_dir"] == str(data_dir) and "${" not in (run_dir / "config_resolved.yaml").read_text()
    assert "test_accuracy" in (run_dir / "run.log").read_text()
    assert (run_dir / "checkpoints" / "best.pt").is_file() and (run_dir / "checkpoints" / "last.pt").is_file()

    rows = read_metrics(run_dir)
    assert tuple(rows[0]) == METRICS_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row in rows:
        assert all(math.isfinite(float(v)) for v in row.values())
        assert 0 <= float(row["val_accuracy"]) <= 1 and float(row["epoch_time_seconds"]) > 0
    # the logged LR is the closed form at each epoch's last step: warmup is per step,
    # so the first epoch ends at (steps-1)/steps of the peak, and the run ends near 0
    schedule = make_schedule(compose(*SLICE), 128)
    assert float(rows[0]["learning_rate"]) == pytest.approx(schedule.epoch_lr(0), abs=1e-9)
    assert float(rows[0]["learning_rate"]) < schedule.base_lr
    assert float(rows[1]["learning_rate"]) == pytest.approx(schedule.epoch_lr(1), abs=1e-9)
    assert float(rows[1]["learning_rate"]) < 0.5 * schedule.base_lr

    test = read_json(run_dir / "test.json")
    assert {"test_accuracy", "test_macro_f1", "best_epoch"} <= set(test)
    assert test["best_epoch"] in (1, 2) and test["test_images"] == 64
    env = read_json(run_dir / "env.json")
    for key in ("python", "torch", "cuda", "cudnn", "gpu_name", "gpu_driver", "cpu_model", "hostname", "git_commit"):
        assert key in env
    assert env["gpu_name"] == "cpu" or env["cuda"]
    import importlib.metadata

    assert env["packages"]["torch"] == importlib.metadata.version("torch") and env["packages_sha256"].startswith(
        "sha256:"
    )
    assert env["torch_cpu_capability"] and env["torch_onednn"] and "numpy_blas" in env
    if "avx2" in Path("/proc/cpuinfo").read_text():
        assert "avx2" in env["cpu_features"].split()
    status = read_json(run_dir / "status.json")
    assert status["state"] == "completed"
    assert status["progress"]["epoch"] == 2 and status["progress"]["seconds_per_epoch"] > 0
    assert read_json(run_dir / "summary.json")["accuracy_targets"] == [0.9]  # conf/dataset/digits.yaml
    summary = read_json(run_dir / "summary.json")
    assert summary["images_per_epoch"] == 128 and summary["steps_per_epoch"] == 4 and summary["seed"] == 42
    assert summary["execution_mode"] == "eager+channels_last" and summary["startup_seconds"] > 0
    assert summary["first_epoch_overhead_seconds"] is not None and summary["peak_host_rss_bytes"] > 0
    meta = read_json(data_dir / "cache" / "digits" / "meta.json")
    assert summary["data_fingerprint"] == meta["fingerprint"] and summary["data_source"] == meta["source"]
    assert "accelerator_peak_bytes" in summary
    assert sorted(scalars(run_dir)) == sorted([*TAGS.values(), *TIMING_TAGS.values()])


@pytest.mark.cli
@pytest.mark.parametrize("framework", ["pytorch", pytest.param("keras", marks=pytest.mark.slow)])
def test_same_seed_reproduces_and_other_seed_differs(tmp_path, data_dir, framework, trained_run):
    runs = {"a": trained_run(framework)[0]}  # seed 42
    for name, seed in (("b", 42), ("c", 7)):
        small_run(tmp_path / name, data_dir, f"seed={seed}", f"framework={framework}")
        runs[name] = tmp_path / name
    runs = {name: (without_timing(read_metrics(d)), read_json(d / "test.json")) for name, d in runs.items()}
    (metrics_a, test_a), (metrics_b, test_b), (metrics_c, _) = runs["a"], runs["b"], runs["c"]
    assert metrics_a == metrics_b
    assert test_a["test_accuracy"] == test_b["test_accuracy"] and test_a["test_loss"] == test_b["test_loss"]
    assert metrics_a != metrics_c


@pytest.mark.cli
def test_gradient_accumulation_and_contiguous_layout(tmp_path, data_dir):
    small_run(tmp_path / "k2", data_dir, "grad_accum_steps=2", "framework.channels_last=false")
    rows = read_metrics(tmp_path / "k2")
    schedule = make_schedule(compose(*SLICE), 128)
    assert float(rows[-1]["learning_rate"]) == pytest.approx(schedule.epoch_lr(1))
    summary = read_json(tmp_path / "k2" / "summary.json")
    assert summary["grad_accum_steps"] == 2 and summary["steps_per_epoch"] == 4
    assert summary["execution_mode"] == "eager"


@pytest.mark.slow
@pytest.mark.cli
def test_a_torch_compile_run_is_its_own_arm_and_its_first_epoch_pays_the_compile(tmp_path, data_dir):
    """framework.execution=compile: torch.compile compiles at the first training step,
    inside the first epoch's timer, so the compile time shows as the first epoch's
    overhead (and in time to accuracy), apart from the steady-state epochs (about a minute on a CPU)."""
    small_run(tmp_path / "compiled", data_dir, "framework.execution=compile")
    summary = read_json(tmp_path / "compiled" / "summary.json")
    assert (summary["execution"], summary["execution_mode"]) == ("compile", "torch.compile+channels_last")
    assert summary["config"]["framework"]["execution"] == "compile"
    first, second = (float(r["epoch_time_seconds"]) for r in read_metrics(tmp_path / "compiled"))
    assert summary["first_epoch_overhead_seconds"] == pytest.approx(first - second)
    assert first > 5 * second  # compiling takes seconds, 4 compiled steps a fraction of one
    assert read_json(tmp_path / "compiled" / "test.json")["test_accuracy"] >= 0


@pytest.mark.cli
def test_pytorch_run_imports_no_tensorflow(data_dir):
    code = f"""
import sys
sys.path.insert(0, {str(REPO / "tests")!r})
from helpers import compose
from benchmark.run.loop import train_and_test
import tempfile, pathlib
cfg = compose("debug=smoke", "data_dir={data_dir}")
train_and_test(cfg, pathlib.Path(tempfile.mkdtemp()))
assert "torch" in sys.modules
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print("IMPORTED", bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "IMPORTED []" in out.stdout


@pytest.mark.cli
def test_neutral_modules_import_no_framework():
    code = """
import sys
import benchmark.spec.config, benchmark.data, benchmark.run.loop, benchmark.run.metrics, benchmark.spec.models
import benchmark.run.rundir, benchmark.spec.schedule, benchmark.run.host, benchmark.backends
import benchmark.sweep.status, benchmark.run.tensorboard
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "tensorflow", "keras"))
print("IMPORTED", bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "IMPORTED []" in out.stdout


@pytest.mark.cli
def test_a_diverging_run_fails_and_the_sanity_check_names_it(tmp_path, data_dir):
    """lr 1e30 breaks the weights in the first step; the train loss (taken before each
    update) stays finite, so the val loss must catch it."""
    from benchmark.analyze import analyze

    run_dir = tmp_path / "sweep" / "diverged"
    result = run_cli(
        "debug=smoke",
        "limit.train=32",  # one step: its loss is taken before the update that breaks the weights
        "optim.lr=1e30",
        f"hydra.run.dir={run_dir}",
        f"data_dir={data_dir}",
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == "error: training diverged: val_loss is nan in epoch 1"
    status = read_json(run_dir / "status.json")
    assert status["state"] == "failed" and "training diverged" in status["reason"]
    assert not (run_dir / "test.json").exists()

    report = analyze(tmp_path / "sweep", plots=False)
    assert "FAILED: finite 1x" in (report / "significance_summary.md").read_text()
    sanity = (report / "sanity.csv").read_text().splitlines()
    assert sanity[1].startswith(
        "finite,pytorch,torch,eager,digits,mobilenetv2,fp32,native,42,1.0,0.0,False,training diverged"
    )


def test_progress_reads_the_loss_at_most_progress_updates_times_per_epoch():
    from benchmark.backends import report_every

    for steps, updates in ((175, 10), (5, 10), (7, 0), (351, 3)):
        every = report_every(steps, updates)
        reads = len([s for s in range(1, steps + 1) if s % every == 0 or s == steps])
        assert 1 <= reads <= max(1, updates), (steps, updates, reads)
