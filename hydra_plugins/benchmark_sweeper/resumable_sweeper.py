"""Hydra's basic sweeper, plus: runs already completed in the sweep directory are not launched.

Lives in the ``hydra_plugins`` namespace because Hydra only instantiates sweepers
found there. Filtering before the launcher matters on SLURM: a re-launched stage-2
sweep submits only what is missing instead of 180 jobs that would each exit at once.
"""

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf

log = logging.getLogger("benchmark.sweep")


@dataclass
class ResumableSweeperConf:
    _target_: str = "hydra_plugins.benchmark_sweeper.resumable_sweeper.ResumableSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="resumable", node=ResumableSweeperConf, provider="benchmark")


class _SkipCompleted(Launcher):
    """Wraps the configured launcher; answers completed runs from their test.json."""

    def __init__(self, inner: Launcher, sweeper: "ResumableSweeper"):
        self.inner, self.sweeper = inner, sweeper

    def setup(self, **kwargs: Any) -> None:  # the inner launcher is set up already
        pass

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from benchmark import BenchmarkError
        from benchmark.resume import completed_result

        tic = time.perf_counter()
        loader, master = self.sweeper.hydra_context.config_loader, self.sweeper.config
        results: List[Optional[JobReturn]] = []
        pending: List[Sequence[str]] = []
        run_dirs: List[str] = []
        for overrides in job_overrides:
            cfg = loader.load_sweep_config(master, list(overrides))
            run_dir = Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
            run_dirs.append(str(run_dir.resolve()))
            try:
                done = completed_result(run_dir, _task_config(cfg))
            except BenchmarkError as exc:  # nothing launched yet: stop the whole sweep here
                print(f"error: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
            if done is None:
                results.append(None)
                pending.append(overrides)
            else:
                results.append(JobReturn(overrides=list(overrides), working_dir=str(run_dir),
                                         status=JobStatus.COMPLETED, _return_value=done))
        self.sweeper.record_jobs(run_dirs)
        skipped = len(job_overrides) - len(pending)
        log.info("sweep: %d runs, %d already completed (skipped, checked in %.1f s), %d to launch",
                 len(job_overrides), skipped, time.perf_counter() - tic, len(pending))
        launched = iter(self.inner.launch(pending, initial_job_idx) if pending else [])
        return [r if r is not None else next(launched) for r in results]


def _task_config(cfg):
    """The job's config as the task function sees it (without the hydra node)."""
    return OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])


class ResumableSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Composing every job is what the skip check does anyway; a bad job fails there."""

    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = _SkipCompleted(self.launcher, self)
        self.job_dirs: List[str] = []

    def record_jobs(self, run_dirs: List[str]) -> None:
        """The end-of-sweep report judges this sweep by these runs only (sweep_jobs.json)."""
        from benchmark.rundir import write_json
        from benchmark.sweep_report import JOBS_FILE

        self.job_dirs += run_dirs
        write_json(Path(self.config.hydra.sweep.dir) / JOBS_FILE, {"run_dirs": self.job_dirs})
