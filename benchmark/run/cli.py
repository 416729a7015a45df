"""The command line: `benchmark [overrides]` / `python -m benchmark [overrides]`.

`train` is the Hydra task function (one run into Hydra's output directory) and
`main` the Hydra application around it. The task function lives in this importable
module, not in __main__, so that a launcher can hand it to a fresh process by
reference (hydra_plugins/benchmark_sweeper/process_launcher.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, open_dict

from benchmark import BenchmarkError, DamagedRunError, OtherRunError
from benchmark.files import refuse_links_out
from benchmark.run.loop import train_and_test, validate
from benchmark.run.resume import check_same_run, completed_result
from benchmark.run.rundir import RunDir
from benchmark.spec.config import CONF_DIR, is_benchmark_config, register_configs

log = logging.getLogger("benchmark")

register_configs()


class CheckValues(Callback):
    """A single run's values are checked before Hydra creates its directory, so a bad
    value is one line, exit 2 and nothing written (a sweep's jobs: the resumable sweeper)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if not is_benchmark_config(config):
            return
        try:
            validate(config, config.hydra.run.dir)  # the schema's type is kept on the whole config
        except BenchmarkError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


def train(cfg: DictConfig) -> dict:
    """Train one run into Hydra's output directory.

    In a sweep a failing run is marked failed and the sweep goes on (the end-of-sweep
    callback lists the failures and exits non-zero); a single run fails loudly.
    """
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    # relative data paths mean the directory the command was launched from, also under
    # hydra.job.chdir=true (where the job's working directory is its run directory)
    with open_dict(cfg):
        cfg.data_dir = to_absolute_path(os.path.expanduser(cfg.data_dir))
        if cfg.dataset.source:
            cfg.dataset.source = to_absolute_path(os.path.expanduser(cfg.dataset.source))
    rundir = RunDir(run_dir)
    try:
        # checked before Hydra wrote, and again now: a link planted in a shared sweep
        # since then would have the run write elsewhere
        refuse_links_out(run_dir, "the run directory", own=True)
        with interruptible(), rundir.exclusive():  # the lock is held until the run's final status is written
            return _run(cfg, rundir, in_sweep, str(HydraConfig.get().job.override_dirname or ""))
    except BenchmarkError as exc:  # another live process has the run, or planted links: leave its files alone
        return _refuse(exc, in_sweep)
    except Interrupted as exc:  # before the run held its directory: nothing to record
        print(f"interrupted by {exc.name} before the run started", file=sys.stderr)
        raise SystemExit(128 + exc.signum) from None


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived (raised from the handler, so that no `except Exception`
    on the way swallows it and every temporary file on the way is removed)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum, self.name = signum, signal.Signals(signum).name


@contextlib.contextmanager
def interruptible():
    """SIGTERM (scancel, preemption, `kill`) and SIGINT (Ctrl-C) raise Interrupted while
    the run trains; SLURM's pre-timeout signal (SIGUSR2, submitit's) is left alone, so
    it still checkpoints and requeues the job."""

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _refuse(exc: BenchmarkError, in_sweep: bool) -> dict:
    log.error("failed: %s", exc)
    if in_sweep:
        return {"state": "failed", "reason": str(exc)}
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None


def _run(cfg: DictConfig, rundir, in_sweep: bool, variant: str) -> dict:
    run_dir = rundir.root
    try:
        problems = rundir.damaged_files()
        if problems:
            raise DamagedRunError(
                f"{run_dir} is damaged ({'; '.join(problems)}); nothing in it was changed: repair "
                "the file or delete the run directory to redo the run"
            )
        check_same_run(run_dir, cfg)
        done = completed_result(run_dir, cfg)
        if done is not None:
            log.info("skipped: %s already completed (test_accuracy %.4f)", run_dir, done["test_accuracy"])
            return done
        result = train_and_test(cfg, run_dir, variant)
    except Interrupted as exc:
        # The process ends here without returning a result, in a sweep too: a SLURM job
        # being requeued must not report, and the launchers record how it ended.
        epoch = (rundir.read_status() or {}).get("progress", {}).get("epoch", 0)
        reason = f"interrupted by {exc.name} after epoch {epoch}; launch it again to resume"
        _record(rundir, "interrupted", signal=exc.name, last_epoch=epoch, reason=reason)
        log.warning("%s: %s", run_dir, reason)
        print(f"{run_dir}: {reason}", file=sys.stderr)
        raise SystemExit(128 + exc.signum) from None
    except BenchmarkError as exc:
        if not isinstance(exc, OtherRunError):  # never overwrite another run's status
            _record(rundir, "failed", reason=str(exc))
        return _refuse(exc, in_sweep)
    except Exception as exc:
        reason = f"{exc.__class__.__name__}: {exc}"
        _record(rundir, "failed", reason=reason, traceback=traceback.format_exc())
        if in_sweep:
            log.exception("failed: %s", reason)
            return {"state": "failed", "reason": reason}
        raise
    rundir.set_status("completed", test=result)
    return result


def _record(rundir, state: str, **details) -> None:
    """Write the run's final status if the disk lets us (it may be the full one)."""
    try:
        rundir.set_status(state, **details)
    except (OSError, BenchmarkError) as exc:
        log.error("could not record the run's state %s in %s: %s", state, rundir.status, exc)


main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(train)
