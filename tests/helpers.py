"""Shared helpers for the tests: run the real CLI, compose the real config."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = str(REPO / "conf")
# The run most end-to-end tests need: a smoke run (conf/debug/smoke.yaml) of two epochs,
# with a warm-up epoch so the per-step warm-up shows in its learning rates.
SMOKE_RUN = ("debug=smoke", "epochs=2", "optim.warmup_epochs=1")


def run_cli(*overrides: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m benchmark OVERRIDES...` from the repository root, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
    )


def sigkill_when_logged(
    run_dir: Path, line: str, *overrides: str, env: dict | None = None, timeout: float = 300
) -> subprocess.Popen:
    """Launch `python -m benchmark OVERRIDES... hydra.run.dir=RUN_DIR` and SIGKILL it (no
    handler runs: like a lost node) once its run.log has `line`; the finished process."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    log, deadline = Path(run_dir) / "run.log", time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and line in log.read_text():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    return proc


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """Two runs' metrics (timing aside) and test results (finish time aside) are equal."""
    assert without_timing(read_metrics(run_dir)) == without_timing(read_metrics(reference))
    ref_test, test = read_json(reference / "test.json"), read_json(run_dir / "test.json")
    ref_test.pop("finished_at"), test.pop("finished_at")
    assert test == ref_test


def compose(*overrides: str, return_hydra: bool = False):
    """The composed config, exactly as the entrypoint sees it (no Hydra run dir unless
    `return_hydra`: then with the hydra node, its directories resolved as for a run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from benchmark.spec.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra)


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def without_timing(rows: list[dict]) -> list[dict]:
    """metrics.csv rows without the columns that may differ between identical runs: the times."""
    from benchmark.run.metrics import TIMING_COLUMNS

    return [{k: v for k, v in row.items() if k != "epoch_time_seconds" and k not in TIMING_COLUMNS} for row in rows]


def torch_lrs(schedule) -> list[float]:
    """The LR of each optimizer step of the PyTorch backend's scheduler, stepped once per
    step as its training loop steps it."""
    import torch

    from benchmark.backends.pytorch.schedule import build_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=schedule.base_lr, momentum=0.9, nesterov=True)
    scheduler = build_scheduler(optimizer, schedule)
    lrs = []
    for _ in range(schedule.total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def copy_run(run_dir: Path, to: Path) -> Path:
    """A copy of a finished run directory for a test that damages or continues it."""
    import shutil

    return Path(shutil.copytree(run_dir, to, symlinks=True))


def run_main(*overrides: str) -> tuple[int, str, str]:
    """`python -m benchmark OVERRIDES...` in this process, for the paths that stop before
    a run trains (errors, --help, --cfg): (exit code, stdout, stderr). The command line's
    own process, imports and exit status are covered by a run_cli test of each exit path."""
    import contextlib
    import io
    import logging

    from benchmark.run.cli import main

    if "--multirun" in overrides or "-m" in overrides:
        # a sweep sets up Hydra's logging on this process's streams before its checks
        raise ValueError("run_main is for single runs; start a sweep with run_cli")
    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # Hydra's logging set-up (logging.config.dictConfig) closes every handler the process
    # has, pytest's own among them: not in this process
    sys.argv = ["benchmark", *overrides, "hydra/hydra_logging=none", "hydra/job_logging=none"]
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "0"  # as run_cli: Hydra's one-line errors, whatever the shell set
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv = argv
        root.handlers[:], root.level = handlers, level
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error  # whatever Hydra set up writes to `out`
    return code, out.getvalue(), err.getvalue()
