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

With ``hydra.launcher.wait=false`` nothing waits: ``launch`` only notes the runs to
train (a run whose recorded job SLURM still queues or runs is not submitted again),
then the resumable sweeper calls ``submit_detached`` once, which submits them as one
job array and a small report job depending on the array ending in any state
(``afterany``). The report job marks the runs whose job ended without a final status
and runs the sweep's end-of-multirun callbacks on the cluster: sweep_status.csv and
the analysis report, as a waiting launch writes them. The launching process exits at once.
"""

import fcntl
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
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

from hydra_plugins.benchmark_sweeper import job_config, job_dir, job_return, refused_job, task_config

log = logging.getLogger("benchmark.sweep")


@dataclass
class ReportJobConf:
    """The detached sweep's report job (hydra.launcher.report_job.*): it only reads run
    directories and writes the report, so CPU only, no GPU."""

    partition: str | None = None  # None: the runs' partition
    cpus_per_task: int = 1
    mem_gb: int = 8
    timeout_min: int = 60


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
    # false: submit the runs as one job array plus a report job that runs when they end,
    # print the job ids and exit (log out; `python -m benchmark.status` shows progress)
    wait: bool = True
    report_job: ReportJobConf = field(default_factory=ReportJobConf)


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
            return [job_return(self.sweep_config, self.overrides, self.run_dir, JobStatus.FAILED, RuntimeError(reason))]


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
    before its first %-pattern. Whoever can rename a folder above it can put a folder of
    their own in its place, so: the folders the launch creates (.submitit and the sweep
    directory) get the sticky bit where they are yours and others may write in them; any
    of the three that is a link, the job folder that belongs to someone else or is open to
    others, and a folder above that anyone may write in without the sticky bit, are
    refused with one line (exit 2), before anything is changed. A folder above writable
    by its group only draws a warning: under umask 002 every checkout is, and the group
    is often the user's own (docs/security.md)."""
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
        problems, sticky, group_writable = [], [], []
        resolved = parent.resolve()  # links above the sweep (e.g. /work -> /mnt/work) are the site's layout
        launch_made = (parent, parent.parent)
        above = [(path, "a folder above it") for path in resolved.parent.parents]
        for path, what in ((folder, "its folder"), *((p, "the folder above it") for p in launch_made), *above):
            info = os.lstat(path)
            open_to_others = info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX
            if stat.S_ISLNK(info.st_mode):
                problems.append(f"{what} {path} is a symbolic link")
            elif path == folder and info.st_uid != os.geteuid():
                problems.append(f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()})")
            elif path == folder and info.st_mode & 0o077:
                problems.append(f"{path} is open to others (mode {stat.S_IMODE(info.st_mode):o}, must be 700)")
            elif path in launch_made and open_to_others:
                if info.st_uid == os.geteuid():  # others may create in it, never rename what is ours
                    sticky.append((path, stat.S_IMODE(info.st_mode) | stat.S_ISVTX))
                else:
                    problems.append(f"{path} is writable by others without the sticky bit (chmod +t {path})")
            elif path not in launch_made and path != folder and open_to_others:
                if info.st_mode & 0o002:
                    problems.append(
                        f"{path} is writable by anyone without the sticky bit (chmod +t {path} as its owner, "
                        "or set hydra.launcher.submitit_folder below a folder only you can write)"
                    )
                else:
                    group_writable.append(path)
        for path, mode in sticky if not problems else ():
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        if group_writable and not problems:
            log.warning(
                "%s: writable by its group without the sticky bit; a member of the group could rename the sweep "
                "and swap the job files that run as you (chmod +t it, or docs/security.md)",
                group_writable[0],
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


# sbatch options of a site's accounting that the report job keeps from the runs' additional_parameters
SITE_OPTIONS = ("account", "qos", "reservation", "clusters", "wckey")


def run_report_job(config, jobs_file: str, array_jobs: dict[str, str]) -> int:
    """The report job, on the cluster once the launch's job array has ended: a run whose
    job ended without a final status (killed, node lost, cancelled before its signal
    handler ran) is marked failed, then the sweep's end-of-multirun callbacks run as in
    a waiting launch (sweep_status.csv, the analysis report). Its result: the exit
    status the waiting launch would have had (1: a run did not complete)."""
    # at discovery Hydra is still importing itself; used only when the report job runs
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    # Hydra imports every plugin module at discovery: the benchmark loads only when used
    from benchmark.run.rundir import RunDir
    from benchmark.sweep import callback as sweep_report
    from benchmark.sweep.status import QUEUED, lock_is_held, scheduler_states

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    states = scheduler_states(list(array_jobs.values()))
    for run_dir, job in array_jobs.items():
        rd = RunDir(run_dir)
        state = (rd.read_status() or {}).get("state")
        never_reported = not rd.status.exists() and not rd.test.exists() and rd.root.joinpath(".hydra").is_dir()
        # a live holder of the lock is another launch's job on the same run: its own report job judges it
        if states.get(job) in QUEUED:  # requeued (preempted, timed out): it will report itself
            continue
        if (state == "running" or never_reported) and lock_is_held(rd.root) is not True:
            # the run's own job and process stay named in it, not this report job's
            named = {"slurm_job_id": job, **({"slurm_array_task": job} if "_" in job else {})}
            kept = ("hostname", "pid", "slurm_job_id", "slurm_array_task")
            named.update((k, v) for k, v in (rd.read_status() or {}).items() if k in kept)
            rd.set_status(
                "failed",
                reason=f"SLURM job {job} ended ({states.get(job) or 'state unknown'}) without reporting",
                **named,
            )
            log.error("SLURM job %s (%s) ended without reporting: marked failed", job, run_dir)
    setup_globals()
    HydraConfig.instance().set_config(config)
    sweep_report.THIS_LAUNCH["jobs_file"] = Path(jobs_file)
    try:
        for callback in (config.hydra.callbacks or {}).values():
            instantiate(callback).on_multirun_end(config=config)
    except SystemExit as exc:  # "a run did not complete": listed in the report, the report job itself succeeded
        return int(exc.code or 0)
    return 0


class IsolatingSlurmLauncher(SlurmLauncher):
    def __init__(self, wait: bool = True, report_job=None, **params) -> None:
        super().__init__(**params)
        # this launcher's own settings, not submitit executor parameters
        self.wait = bool(wait)
        report = OmegaConf.to_container(report_job) if OmegaConf.is_config(report_job) else report_job
        self.report_params: dict = report if isinstance(report, dict) else {}
        self.noted: list[tuple[list[str], int, str]] = []  # detached: (overrides, job number, run directory)

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

        self.params["submitit_folder"] = str(self.params["submitit_folder"]).replace("%u", _user())
        private_job_folder(self.params["submitit_folder"])
        if not self.wait:
            return self._note(job_overrides, initial_job_idx)
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

    def _note(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Detached: note the runs for the one array `submit_detached` sends."""
        # Hydra imports every plugin module at discovery: the benchmark loads only when used
        from benchmark.sweep import callback as sweep_report

        if "jobs_file" not in sweep_report.THIS_LAUNCH:  # set up by the resumable sweeper, which submits at its end
            print("error: hydra.launcher.wait=false needs hydra/sweeper=resumable; nothing submitted", file=sys.stderr)
            raise SystemExit(2)
        returns = []
        for i, overrides in enumerate(job_overrides):
            cfg = job_config(self.hydra_context, self.config, overrides, initial_job_idx + i)
            self.noted.append((list(overrides), initial_job_idx + i, os.path.realpath(job_dir(cfg))))
            returns.append(
                JobReturn(
                    overrides=list(overrides),
                    cfg=task_config(cfg),
                    hydra_cfg=cfg,
                    working_dir=self.noted[-1][2],
                    task_name=cfg.hydra.job.name,
                    status=JobStatus.UNKNOWN,  # submitted, not run: the report job judges it
                )
            )
        return returns

    def _executor(self, **overrides):
        """A submitit executor with this launcher's parameters, as hydra-submitit-launcher builds it."""
        import submitit  # only when jobs are submitted

        params = dict(self.params)
        executor = submitit.AutoExecutor(
            folder=params.pop("submitit_folder"), cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout")
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in {**params, **overrides}.items()})
        return executor

    def submit_detached(self, jobs_file: Path) -> None:
        """Detached: the noted runs as one job array, then the report job after it, but not
        a run whose recorded job SLURM still queues or runs (the sweep launched again while
        it waits); their ids in slurm_jobs.json and this launch's job list; what next, printed."""
        # Hydra imports every plugin module at discovery: the benchmark loads only when used
        from benchmark.files import open_lock, read_json, write_json
        from benchmark.sweep import callback as sweep_report
        from benchmark.sweep.status import QUEUED, SLURM_JOBS_FILE, scheduler_states

        if self.wait or not self.noted:
            return  # nothing to submit: the end-of-sweep report is written here, now
        sweep_dir = Path(self.config.hydra.sweep.dir)
        # two launches at once: the second sees the jobs the first submitted, and submits none of them again
        with open_lock(sweep_dir / ".slurm_jobs.lock", "the lock of the sweep's SLURM jobs") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            recorded = {os.path.realpath(d): str(j) for d, j in (read_json(sweep_dir / SLURM_JOBS_FILE) or {}).items()}
            states = scheduler_states([recorded[d] for _, _, d in self.noted if d in recorded])
            in_flight = [(d, recorded[d]) for _, _, d in self.noted if states.get(recorded.get(d, "")) in QUEUED]
            for run_dir, job in in_flight:
                log.info("%s: its SLURM job %s is %s: not submitted again", run_dir, job, states[job])
            queued = [(o, idx) for o, idx, d in self.noted if states.get(recorded.get(d, "")) not in QUEUED]
            sweep_report.THIS_LAUNCH["detached"] = True
            lines = [f"{len(in_flight)} run(s) already queued or running on SLURM: not submitted again"]
            lines = lines if in_flight else []
            if not queued:
                print("\n".join([*lines, "nothing submitted: their own report job writes the report when they end"]))
                return
            # the arguments of hydra-submitit-launcher's job, as its launch passes them
            jobs = self._executor().map_array(
                self,
                [o for o, _ in queued],
                ["hydra.sweep.dir"] * len(queued),
                [idx for _, idx in queued],
                [f"job_id_for_{idx}" for _, idx in queued],
                [Singleton.get_state()] * len(queued),
            )
            # the job's config as the job will see it: submitit's launcher sets its id in the job
            run_dirs = [
                job_dir(job_config(self.hydra_context, self.config, o, idx, job.job_id))
                for (o, idx), job in zip(queued, jobs, strict=True)
            ]
            _record_job_ids(sweep_dir, run_dirs, jobs)
        array = str(jobs[0].job_id).partition("_")[0]
        jobs_file = Path(jobs_file).resolve()  # the report job may start elsewhere than here
        write_json(jobs_file, {**(read_json(jobs_file) or {}), "slurm_array": array})
        # the report waits for this array and for the runs of the sweep still in flight from
        # an earlier launch, so that it reports them finished rather than missing
        after = ":".join([array, *(job for _, job in in_flight)])
        # the site's own accounting options stay; the runs' other extras (a GPU type, a hold) do not
        site = {k: v for k, v in (self.params.get("additional_parameters") or {}).items() if k in SITE_OPTIONS}
        report = self.report_params
        report_executor = self._executor(
            name=f"{self.config.hydra.job.name}-report",
            partition=report.get("partition") or self.params.get("partition"),
            cpus_per_task=report.get("cpus_per_task", 1),
            mem_gb=report.get("mem_gb", 8),
            timeout_min=report.get("timeout_min", 60),
            # none of the runs' GPU requests, nor their extra sbatch options (a GPU type, a hold)
            **dict.fromkeys(("gpus_per_node", "gpus_per_task", "cpus_per_gpu", "mem_per_gpu", "mem_per_cpu", "gres")),
            constraint=None,
            additional_parameters={**site, "dependency": f"afterany:{after}"},
        )
        array_jobs = {str(Path(d).resolve()): str(j.job_id) for d, j in zip(run_dirs, jobs, strict=True)}
        try:
            report_job = report_executor.submit(run_report_job, self.config, str(jobs_file), array_jobs)
        except Exception as exc:  # submitit: sbatch refused it (a partition or QOS for GPU jobs only, ...)
            print(
                f"error: the runs were submitted as SLURM job array {array}, but the report job was refused "
                f"({' '.join(str(exc).split())[:300]}); set hydra.launcher.report_job.partition=..., or run "
                f"python -m benchmark.analyze {sweep_dir} once they have ended",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        write_json(jobs_file, {**(read_json(jobs_file) or {}), "slurm_array": array, "report_job": report_job.job_id})
        lines += [
            f"submitted {len(jobs)} run(s) as SLURM job array {array}, and the report job {report_job.job_id} "
            "that runs when the array has ended (in any state)",
            f"  job ids: {sweep_dir / SLURM_JOBS_FILE}, {jobs_file}",
            f"  watch:   python -m benchmark.status {sweep_dir} --watch",
            f"  cancel:  scancel {array}   (the report job still lists the runs; launch the sweep again to resume)",
            f"  report:  {sweep_dir}/sweep_status.csv and report/, written by job {report_job.job_id}",
        ]
        print("\n".join(lines))
