"""The command line: `benchmark [overrides]` / `python -m benchmark [overrides]`.

`train` is the Hydra task function (one run into Hydra's output directory) and
`main` the Hydra application around it. The task function lives in this importable
module, not in __main__, so that a launcher can hand it to a fresh process by
reference (hydra_plugins/benchmark_sweeper/process_launcher.py)."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from benchmark import BenchmarkError, OtherRunError
from benchmark.config import register_configs

log = logging.getLogger("benchmark")
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

register_configs()


class CheckValues(Callback):
    """A single run's values are checked before Hydra creates its directory, so a bad
    value is one line, exit 2 and nothing written (a sweep's jobs: the resumable sweeper)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from benchmark.config import check_values, is_benchmark_config

        task = OmegaConf.masked_copy(config, [k for k in config.keys() if k != "hydra"])
        if not is_benchmark_config(task):
            return
        try:
            check_values(task, config.hydra.run.dir)
        except BenchmarkError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


def train(cfg: DictConfig) -> dict:
    """Train one run into Hydra's output directory.

    In a sweep a failing run is marked failed and the sweep goes on (the end-of-sweep
    callback lists the failures and exits non-zero); a single run fails loudly.
    """
    from benchmark.rundir import RunDir

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    rundir = RunDir(run_dir)
    try:
        with rundir.exclusive():  # held until the run's final status is written
            return _run(cfg, rundir, in_sweep, str(HydraConfig.get().job.override_dirname or ""))
    except OtherRunError as exc:  # another live process has the run: leave its files alone
        return _refuse(exc, in_sweep)


def _refuse(exc: BenchmarkError, in_sweep: bool) -> dict:
    log.error("failed: %s", exc)
    if in_sweep:
        return {"state": "failed", "reason": str(exc)}
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None


def _run(cfg: DictConfig, rundir, in_sweep: bool, variant: str) -> dict:
    from benchmark.resume import check_same_run, completed_result

    run_dir = rundir.root
    try:
        check_same_run(run_dir, cfg)
        done = completed_result(run_dir, cfg)
        if done is not None:
            log.info("skipped: %s already completed (test_accuracy %.4f)", run_dir, done["test_accuracy"])
            return done
        rundir.set_status("running")
        from benchmark.engine import train_and_test

        result = train_and_test(cfg, run_dir, variant)
    except BenchmarkError as exc:
        if not isinstance(exc, OtherRunError):  # never overwrite another run's status
            rundir.set_status("failed", reason=str(exc))
        return _refuse(exc, in_sweep)
    except Exception as exc:
        reason = f"{exc.__class__.__name__}: {exc}"
        rundir.set_status("failed", reason=reason, traceback=traceback.format_exc())
        if in_sweep:
            log.exception("failed: %s", reason)
            return {"state": "failed", "reason": reason}
        raise
    rundir.set_status("completed", test=result)
    return result


main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(train)
