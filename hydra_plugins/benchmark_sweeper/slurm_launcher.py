"""hydra-submitit-launcher's ``submitit_slurm``, with one job's hard death isolated.

A run that fails in Python reports itself (status.json) and returns normally. A job
that dies without returning (killed for memory, node lost, cancelled, requeued more
often than ``max_num_timeout``) makes submitit's ``Job.results()`` raise, and the
plugin collects results with a plain list comprehension, so that one job would end
the launching process: no sweep_status.csv, no report, no list of failed runs, while
the other jobs keep running unobserved. Here each job's result is taken on its own;
a dead job's run is marked failed with submitit's reason and the sweep goes on
waiting for the rest, as the local launcher does (process_launcher.py).

The plugin exposes no hook between submitting and collecting, so the executor's
``map_array`` is wrapped for the duration of one ``launch`` call (single-threaded: the
launching process waits in it).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from hydra_plugins.benchmark_sweeper import job_config, job_dir, task_config

log = logging.getLogger("benchmark.sweep")


@dataclass
class SlurmA40Conf(SlurmQueueConf):
    """`hydra/launcher=slurm_a40`: one job per run, one A40 per job. A plugin config (not a
    YAML of the app), so any Hydra app can use it:
        python -m benchmark --multirun experiment=stage1 hydra/launcher=slurm_a40 \
            hydra.launcher.partition=gpu hydra.launcher.account=myproj
    """

    _target_: str = "hydra_plugins.benchmark_sweeper.slurm_launcher.IsolatingSlurmLauncher"
    partition: str | None = None  # your site's GPU partition
    constraint: str | None = None  # e.g. a40, where the site tags its nodes
    gpus_per_node: int | None = 1
    tasks_per_node: int = 1
    cpus_per_task: int | None = 8
    mem_gb: int | None = 64
    timeout_min: int = 1440  # per job; a run that hits it is requeued and resumes
    # submitit requeues a job that times out or is preempted up to this many times; the
    # run continues from its last checkpoint
    max_num_timeout: int = 10
    signal_delay_s: int = 120
    array_parallelism: int = 16  # runs of the sweep on the cluster at once
    # shell lines run before each job: activate the environment ($BENCHMARK_VENV, else
    # .venv of the directory the sweep was launched from, where SLURM starts the job)
    setup: list[str] | None = field(
        default_factory=lambda: [
            'test -n "$BENCHMARK_VENV" || BENCHMARK_VENV=.venv',
            'source "$BENCHMARK_VENV/bin/activate"',
        ]
    )


ConfigStore.instance().store(group="hydra/launcher", name="slurm_a40", node=SlurmA40Conf, provider="benchmark")


class _IsolatedJob:
    """A submitit job whose ``results()`` reports a death instead of raising."""

    def __init__(self, job, overrides: Sequence[str], sweep_config):
        self.job, self.overrides, self.sweep_config = job, list(overrides), sweep_config
        self.run_dir = job_dir(sweep_config)

    def results(self):
        # Hydra imports every plugin module at discovery: the benchmark loads only when used
        from benchmark.run.rundir import RunDir

        try:
            return self.job.results()
        except Exception as exc:  # submitit: UncompletedJobError / FailedJobError, job state in the text
            reason = f"SLURM job {self.job.job_id} ended without reporting: {' '.join(str(exc).split())[:500]}"
            rd = RunDir(self.run_dir)
            if rd.status.is_file() or rd.root.joinpath(".hydra").is_dir():  # a run that started: say so in it
                rd.fail_unreported(reason)
            log.error("SLURM job %s (%s) ended without reporting", self.job.job_id, self.run_dir)
            cfg = self.sweep_config
            return [
                JobReturn(
                    overrides=self.overrides,
                    cfg=task_config(cfg),
                    hydra_cfg=cfg,
                    working_dir=str(self.run_dir),
                    task_name=cfg.hydra.job.name,
                    status=JobStatus.FAILED,
                    _return_value=RuntimeError(reason),
                )
            ]


def _record_job_ids(sweep_dir: Path, run_dirs: Sequence[Path], jobs) -> None:
    """{run directory: job id} in the sweep's slurm_jobs.json, so that
    `python -m benchmark.status` can ask SLURM about jobs still queued."""
    # Hydra imports every plugin module at discovery: the benchmark loads only when used
    from benchmark.files import read_json, write_json
    from benchmark.sweep.status import SLURM_JOBS_FILE

    path = sweep_dir / SLURM_JOBS_FILE
    known = read_json(path) or {}
    known.update({str(Path(run_dir).resolve()): str(job.job_id) for run_dir, job in zip(run_dirs, jobs, strict=True)})
    write_json(path, known)


class IsolatingSlurmLauncher(SlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit  # only when jobs are submitted

        submit = submitit.AutoExecutor.map_array

        def map_array(executor, fn, *iterables):
            jobs = submit(executor, fn, *iterables)
            # the job's config as the job will see it: submitit's launcher sets its id in the job
            configs = [
                job_config(self.hydra_context, self.config, overrides, initial_job_idx + i, job.job_id)
                for i, (job, overrides) in enumerate(zip(jobs, job_overrides, strict=True))
            ]
            isolated = [
                _IsolatedJob(job, overrides, cfg)
                for job, overrides, cfg in zip(jobs, job_overrides, configs, strict=True)
            ]
            _record_job_ids(Path(self.config.hydra.sweep.dir), [j.run_dir for j in isolated], jobs)
            return isolated

        # patched for this launch only (the submitit launcher calls it inside), restored below
        submitit.AutoExecutor.map_array = map_array  # type: ignore[method-assign]
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            submitit.AutoExecutor.map_array = submit  # type: ignore[method-assign]
