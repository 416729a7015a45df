"""Hydra's basic sweeper, plus: runs already completed in the sweep directory are not launched.

Lives in the ``hydra_plugins`` namespace because Hydra only instantiates sweepers
found there. Filtering before the launcher matters on SLURM: a re-launched stage-2
sweep submits only what is missing instead of 180 jobs that would each exit at once.

Otherwise it honours Hydra's sweeper contract as the basic sweeper does (batches of
`max_batch_size`, multirun.yaml, job numbers counted over the whole sweep, so any
`hydra.sweep.subdir` works), with two differences of policy: every job's config is
composed and, for this benchmark's config, checked (benchmark.spec.config.check_values)
before anything is written, so a bad value in a sweep is one line and no directory;
and a job that fails does not stop the sweep (the others still run; the end-of-sweep
report lists it): its FAILED JobReturn is logged, not raised.
"""

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf

from hydra_plugins.benchmark_sweeper import job_config, job_dir, job_return, task_config

log = logging.getLogger("benchmark.sweep")


@dataclass
class ResumableSweeperConf:
    _target_: str = "hydra_plugins.benchmark_sweeper.resumable_sweeper.ResumableSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None


ConfigStore.instance().store(group="hydra/sweeper", name="resumable", node=ResumableSweeperConf, provider="benchmark")


def _stop(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


class _SkipCompleted(Launcher):
    """Wraps the configured launcher; answers completed runs from their test.json."""

    def __init__(self, inner: Launcher, sweeper: "ResumableSweeper"):
        self.inner, self.sweeper = inner, sweeper

    def setup(self, **kwargs: Any) -> None:  # the inner launcher is set up already
        pass

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        # Hydra imports every plugin module at discovery: the benchmark loads only when used
        from benchmark import BenchmarkError
        from benchmark.run.resume import completed_result

        tic = time.perf_counter()
        results: list[JobReturn | None] = []
        run_dirs: list[str] = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            cfg = self.sweeper.composed.pop(idx, None) or job_config(
                self.sweeper.hydra_context, self.sweeper.config, overrides, idx
            )
            run_dir = job_dir(cfg)
            run_dirs.append(str(run_dir.resolve()))
            try:
                done = completed_result(run_dir, task_config(cfg))
            except BenchmarkError as exc:  # nothing launched yet: stop the whole sweep here
                _stop(str(exc))
            results.append(None if done is None else job_return(cfg, overrides, run_dir, JobStatus.COMPLETED, done))
        self.sweeper.record_jobs(run_dirs)
        pending = [i for i, r in enumerate(results) if r is None]
        log.info(
            "sweep: %d runs, %d already completed (skipped, checked in %.1f s), %d to launch",
            len(job_overrides),
            len(job_overrides) - len(pending),
            time.perf_counter() - tic,
            len(pending),
        )
        # each stretch of consecutive pending jobs keeps its job numbers (hydra.job.num)
        for start, stop in _stretches(pending):
            launched = self.inner.launch([job_overrides[i] for i in range(start, stop)], initial_job_idx + start)
            results[start:stop] = list(launched)
        return results  # type: ignore[return-value]


def _stretches(indices: list[int]) -> list[tuple]:
    """[(start, stop), ...] of the runs of consecutive integers in `indices`."""
    out: list[tuple] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


class ResumableSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Every job of the sweep was composed and checked before the first was launched."""

    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        assert self.launcher is not None  # noqa: S101  narrows the Optional: BasicSweeper.setup made it
        self.launcher = _SkipCompleted(self.launcher, self)
        self.job_dirs: list[str] = []
        self.composed: dict[int, Any] = {}  # job number -> its config, composed once for check and skip
        # Hydra imports every plugin module at discovery: the benchmark loads only when used
        from benchmark.sweep import callback as sweep_report

        sweep_report.THIS_LAUNCH["jobs_file"] = sweep_report.launch_jobs_file(Path(config.hydra.sweep.dir))

    def _check_all_jobs(self) -> None:
        """Compose every job (a composition error is Hydra's own exception) and check a
        benchmark config's values, before any file of the sweep is written."""
        # Hydra imports every plugin module at discovery: the benchmark loads only when used
        from benchmark import BenchmarkError

        # Hydra imports every plugin module at discovery: the benchmark loads only when used
        from benchmark.files import redact_url
        from benchmark.run.loop import validate
        from benchmark.spec.config import is_benchmark_config

        assert self.overrides is not None  # noqa: S101  narrows the Optional: sweep() split them first
        for idx, overrides in enumerate(o for batch in self.overrides for o in batch):
            cfg = self.composed[idx] = job_config(self.hydra_context, self.config, overrides, idx)
            if is_benchmark_config(cfg):
                try:
                    validate(cfg, job_dir(cfg), "hydra.sweep.dir/subdir")
                except BenchmarkError as exc:
                    _stop(f"{exc} (in the job {redact_url(' '.join(overrides)) or 'with no overrides'})")

    def sweep(self, arguments: list[str]) -> Any:
        """BasicSweeper.sweep, with every job checked first and failed jobs logged, not raised."""
        # narrow BasicSweeper's Optional attributes: Hydra calls setup() first
        assert self.hydra_context is not None and self.config is not None  # noqa: S101  type narrowing
        assert self.launcher is not None  # noqa: S101  type narrowing
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        self.overrides = self.split_arguments(overrides, self.max_batch_size)
        self._check_all_jobs()
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # Hydra imports every plugin module at discovery: the benchmark loads only when used
        from benchmark.files import atomic_write_text

        # as OmegaConf.save writes it, but under a fresh name renamed over it: never through a planted link
        atomic_write_text(sweep_dir / "multirun.yaml", OmegaConf.to_yaml(self.config))
        returns: list[Sequence[JobReturn]] = []
        initial_job_idx = 0
        while not self.is_done():
            batch = self.get_job_batch()
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            for r in results:
                if r.status == JobStatus.FAILED:
                    log.error("job %s failed: %s", " ".join(r.overrides or ()), r._return_value)
            initial_job_idx += len(batch)
            returns.append(results)
        # a launcher that submits without waiting (slurm_a40 with wait=false) sends every
        # batch's runs as one job array, with a report job after it
        submit = getattr(getattr(self.launcher, "inner", None), "submit_detached", None)
        if submit is not None:
            from benchmark.sweep import callback as sweep_report  # the benchmark loads only when used

            submit(sweep_report.THIS_LAUNCH["jobs_file"])
        return returns

    def record_jobs(self, run_dirs: list[str]) -> None:
        """The end-of-sweep report judges this launch by these runs only: its own job
        list in SWEEP_DIR/.sweeps/, beside those of other sweeps sharing the directory."""
        # Hydra imports every plugin module at discovery: the benchmark loads only when used
        from benchmark.files import write_json
        from benchmark.sweep import callback as sweep_report

        self.job_dirs += run_dirs
        write_json(sweep_report.THIS_LAUNCH["jobs_file"], {"run_dirs": self.job_dirs})
