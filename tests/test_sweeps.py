"""Experiment presets expand to the planned grids; completed runs are skipped; failures are isolated."""

import itertools
import subprocess
import sys
import time

import pytest
from helpers import CONF_DIR, REPO, compose, read_json
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from benchmark.files import write_json
from benchmark.run.resume import comparable_config
from benchmark.run.rundir import RunDir

STAGE2 = {
    "framework": ("keras", "pytorch"),
    "dataset": ("cifar10", "cifar100", "tiny_imagenet"),
    "model": ("resnet50", "mobilenetv2", "convnext_tiny"),
    "precision": ("fp32", "amp"),
    "seed": (42, 123, 456, 789, 1024),
}
SLICE = ("debug=smoke",)


def expand(*overrides: str) -> list[tuple[str, ...]]:
    """The jobs Hydra's sweeper makes of a preset plus command-line sweep overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from benchmark.spec.config import register_configs

    register_configs()
    presets = [o for o in overrides if o.startswith("experiment=")]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = hydra_compose("config", overrides=presets, return_hydra_config=True)
    params = [f"{k}={v}" for k, v in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items()]
    rest = [o for o in overrides if o not in presets]
    parsed = OverridesParser.create().parse_overrides(params + rest)
    return [tuple(job) for job in BasicSweeper.split_arguments(parsed, None)[0]]


def test_presets_expand_to_the_planned_grids():
    stage1, stage2 = expand("experiment=stage1"), expand("experiment=stage2")
    assert len(stage1) == 24 and len(set(stage1)) == 24
    assert len(stage2) == 180 and len(set(stage2)) == 180
    key = lambda job: frozenset(o for o in job if not o.startswith("precision"))  # noqa: E731
    assert {key(j) for j in stage1} <= {key(j) for j in stage2}  # stage 2 contains stage 1
    assert len(expand("experiment=quickstart")) == 6
    assert [j for j in expand("seed=42,123,456,789,1024")] == [(f"seed={s}",) for s in (42, 123, 456, 789, 1024)]


def write_completed_run(sweep_dir, framework, dataset, model, precision, seed):
    """A run directory as a finished run leaves it (the parts the skip check reads)."""
    cfg = compose(
        f"framework={framework}", f"dataset={dataset}", f"model={model}", f"precision={precision}", f"seed={seed}"
    )
    rd = RunDir(sweep_dir / f"{framework}_{dataset}_{model}_{precision}_seed{seed}")
    write_json(
        rd.summary,
        {
            "framework": framework,
            "dataset": dataset,
            "model": model,
            "precision": precision,
            "seed": seed,
            "config": comparable_config(cfg),
        },
    )
    write_json(rd.test, {"test_accuracy": 0.5, "test_macro_f1": 0.5, "best_epoch": 1})
    rd.set_status("completed")


def multirun(sweep_dir, *overrides):
    return subprocess.run(
        ["timeout", "600", sys.executable, "-m", "benchmark", "--multirun", *overrides, f"hydra.sweep.dir={sweep_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.cli
def test_stage2_finds_and_skips_180_completed_runs(tmp_path):
    sweep = tmp_path / "matrix"
    for values in itertools.product(*STAGE2.values()):
        write_completed_run(sweep, *values)
    start = time.perf_counter()
    out = multirun(sweep, "experiment=stage2")
    print(f"expand + skip 180 completed stage2 runs: {time.perf_counter() - start:.1f} s")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "180 runs, 180 already completed" in out.stdout + out.stderr

    # stage 1 launched into the same directory finds its 24 runs there
    out = multirun(sweep, "experiment=stage1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "24 runs, 24 already completed" in out.stdout + out.stderr


@pytest.mark.cli
def test_other_settings_in_a_run_directory_are_refused(tmp_path):
    sweep = tmp_path / "matrix"
    write_completed_run(sweep, "pytorch", "cifar10", "resnet50", "fp32", 42)
    summary = read_json(sweep / "pytorch_cifar10_resnet50_fp32_seed42" / "summary.json")
    summary["config"]["optim"]["momentum"] = 0.8  # someone changed the protocol in between
    write_json(sweep / "pytorch_cifar10_resnet50_fp32_seed42" / "summary.json", summary)
    out = multirun(sweep, "experiment=stage1")
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "optim.momentum: 0.8 -> 0.9" in last
    # the refused run is left as it was
    assert read_json(sweep / "pytorch_cifar10_resnet50_fp32_seed42" / "status.json")["state"] == "completed"


@pytest.mark.cli
def test_a_stale_run_of_another_sweep_does_not_fail_this_one(tmp_path):
    sweep = tmp_path / "matrix"
    write_completed_run(sweep, "pytorch", "cifar10", "resnet50", "fp32", 42)
    RunDir(sweep / "pytorch_cifar10_resnet50_fp32_seed42" / "epochs=3").set_status("failed", reason="an old try")
    out = multirun(sweep, "framework=pytorch", "dataset=cifar10", "model=resnet50", "seed=42")
    assert out.returncode == 0, out.stdout[-2000:]
    assert "1 runs, 1 already completed" in out.stdout + out.stderr


@pytest.mark.cli
def test_failing_run_is_isolated_and_the_sweep_exits_non_zero(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    # limit.train=8 leaves fewer images than one batch of 32: that run fails, the other runs
    out = multirun(sweep, "hydra/launcher=local", "seed=1", "limit.train=64,8", *SLICE, f"data_dir={data_dir}")
    assert out.returncode == 1
    status = {p.parent.name: read_json(p) for p in sweep.rglob("status.json")}
    assert len(status) == 2
    failed = [s for s in status.values() if s["state"] == "failed"]
    completed = [s for s in status.values() if s["state"] == "completed"]
    assert len(failed) == 1 and len(completed) == 1
    assert "batch_size=32 is larger than the 8 training images" in failed[0]["reason"]
    assert "1 run(s) of the sweep did not complete" in out.stdout
    assert "limit.train=8" in out.stdout  # the list names the failed run's directory
    assert "failed" in (sweep / "sweep_status.csv").read_text()


@pytest.mark.cli
def test_other_backends_options_do_not_count_as_other_settings(tmp_path):
    """framework.channels_last is PyTorch's: a Keras run directory is the same run whatever its value."""
    sweep = tmp_path / "matrix"
    write_completed_run(sweep, "keras", "cifar10", "resnet50", "fp32", 42)
    out = multirun(
        sweep,
        "framework=keras",
        "dataset=cifar10",
        "model=resnet50",
        "seed=42",
        "framework.channels_last=false",
        "hydra.job.config.override_dirname.exclude_keys=[framework,dataset,model,seed,framework.channels_last]",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "1 runs, 1 already completed" in out.stdout + out.stderr
