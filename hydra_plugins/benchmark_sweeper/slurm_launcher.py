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
import os
import pwd
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, setup_globals
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from hydra_plugins.benchmark_sweeper import job_config, job_dir, refused_job, task_config

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
    # submitit's pickles (the job to run, its result) in a folder of the submitting user
    # alone, inside a sweep directory that may be shared: a colleague who could replace
    # a queued job's pickle would run their code as you (docs/security.md)
    # (%u: this launcher's own pattern, the submitting user's name; %j: submitit's job id)
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%u/%j"
    setup: list[str] | None = field(
        default_factory=lambda: [
            'test -n "$BENCHMARK_VENV" || BENCHMARK_VENV=.venv',
            'source "$BENCHMARK_VENV/bin/activate"',
        ]
    )


def _user() -> str:
    """The submitting user's name (their uid where the system has none): not $USER, which
    a job's environment may lack or share."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid{os.geteuid()}"


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


def private_job_folder(submitit_folder: str) -> Path:
    """Create (0700) or check the folder of submitit's pickles: the part of `submitit_folder`
    before its first %-pattern. Refused with one line (exit 2) where it is a link, belongs
    to someone else or is open to others, and where its parent lets others rename it."""
    parts = Path(submitit_folder).parts
    first = next((i for i, part in enumerate(parts) if "%" in part), len(parts))
    folder = Path(*parts[:first])
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        problems = []
        for path, what in ((folder, "its folder"), (parent, "the folder above it")):
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                problems.append(f"{what} {path} is a symbolic link")
            elif path == folder and info.st_uid != os.geteuid():
                problems.append(f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()})")
            elif path == folder and info.st_mode & 0o077:
                problems.append(f"{path} is open to others (mode {stat.S_IMODE(info.st_mode):o}, must be 700)")
            elif path == parent and info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
                if info.st_uid == os.geteuid():  # ours: others may write in it, but not rename what is ours
                    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                    try:
                        os.fchmod(fd, stat.S_IMODE(info.st_mode) | stat.S_ISVTX)
                    finally:
                        os.close(fd)
                else:
                    problems.append(
                        f"{path} is writable by others without the sticky bit (chmod +t {path} as its owner)"
                    )
    except OSError as exc:
        problems = [f"cannot create {folder} ({exc.strerror})"]
    if problems:
        print(
            f"error: submitit's job files would not be private to you: {'; '.join(problems)}; anyone who can "
            "replace them runs code as you: nothing was submitted",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return folder


class IsolatingSlurmLauncher(SlurmLauncher):
    def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state):
        """The job on its node: its directory checked for planted links right before
        Hydra writes there, then submitit's launcher's job."""
        import submitit  # only on the job's node

        Singleton.set_state(singleton_state)
        setup_globals()
        cfg = job_config(self.hydra_context, self.config, sweep_overrides, job_num, submitit.JobEnvironment().job_id)
        return refused_job(cfg, sweep_overrides) or super().__call__(
            sweep_overrides, job_dir_key, job_num, job_id, singleton_state
        )

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

        self.params["submitit_folder"] = str(self.params["submitit_folder"]).replace("%u", _user())
        private_job_folder(self.params["submitit_folder"])
        # patched for this launch only (the submitit launcher calls it inside), restored below
        submitit.AutoExecutor.map_array = map_array  # type: ignore[method-assign]
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            submitit.AutoExecutor.map_array = submit  # type: ignore[method-assign]
