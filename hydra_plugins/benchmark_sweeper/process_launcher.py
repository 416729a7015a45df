"""Hydra launcher that runs each job of a local sweep in a fresh Python process.

Hydra's basic launcher runs every job in the launching process. For this benchmark
that is wrong three ways: TensorFlow keeps the GPU memory it took, so a PyTorch run
after a Keras run starves; framework globals (mixed-precision policy, XLA caches,
seeds) leak from one run into the next; and a crash in native code (a segfault)
would end the whole sweep. One process per job removes all three.

Otherwise it is Hydra's basic launcher: each job's config is the sweep config with
the job's overrides, number and id (so any `hydra.sweep.subdir` works, and every
`hydra.*` override reaches the job), the task function is the one Hydra hands the
launcher (any Hydra app, not only this benchmark), `run_job` sets up the job's
directory, logging and working directory in the child, and the child's JobReturn
(config, Hydra config, task name, return value or exception) comes back whole
(job_process.py). A child that dies without returning (a signal, a segfault) gives a
FAILED JobReturn naming how it ended; a benchmark run's status.json says so too.
"""

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.benchmark_sweeper import job_config, job_dir, job_return

log = logging.getLogger(__name__)


@dataclass
class ProcessLauncherConf:
    _target_: str = "hydra_plugins.benchmark_sweeper.process_launcher.ProcessLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="process", node=ProcessLauncherConf, provider="benchmark")


def died(sweep_config, overrides: Sequence[str], how: str) -> JobReturn:
    """The JobReturn of a job whose process ended without returning one."""
    # Hydra imports every plugin module at discovery: the benchmark loads only when used
    from benchmark.run.rundir import RunDir

    working_dir = job_dir(sweep_config)
    reason = f"the job's process ended with {how} without reporting"
    rd = RunDir(working_dir)
    if rd.status.is_file():  # a benchmark run: its status.json must not stay "running"
        rd.fail_unreported(reason)
    return job_return(sweep_config, overrides, working_dir, JobStatus.FAILED, RuntimeError(f"{working_dir}: {reason}"))


def _run_child(cmd: list[str]) -> int:
    """The job's exit code. On Ctrl-C the job (in the same process group) gets SIGINT
    too and records itself as interrupted: wait for it, then end the sweep with one
    line instead of a traceback (subprocess.call would SIGKILL it first)."""
    child = subprocess.Popen(cmd)  # noqa: S603  this interpreter running the job module: an argument list, no shell
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.wait()
        print("sweep interrupted (Ctrl-C): launch the same command again to resume it", file=sys.stderr)
        raise SystemExit(130) from None


class ProcessLauncher(Launcher):
    def __init__(self) -> None:
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import cloudpickle  # Hydra's own dependency, needed only when a job is handed to a process

        setup_globals()
        assert self.config is not None  # noqa: S101  narrows the Optional: Hydra calls setup() first
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Launching %d jobs locally, one process each", len(job_overrides))
        runs: list[JobReturn] = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            sweep_config = job_config(self.hydra_context, self.config, overrides, idx)
            with tempfile.TemporaryDirectory(prefix="hydra-job-") as scratch:
                job_path, result_path = os.path.join(scratch, "job.pkl"), os.path.join(scratch, "result.pkl")
                with open(job_path, "wb") as fh:
                    cloudpickle.dump(
                        {
                            "hydra_context": self.hydra_context,
                            "task_function": self.task_function,
                            "config": sweep_config,
                            "singletons": Singleton.get_state(),
                        },
                        fh,
                    )
                code = _run_child(
                    [sys.executable, "-m", "hydra_plugins.benchmark_sweeper.job_process", job_path, result_path]
                )
                if os.path.isfile(result_path):
                    with open(result_path, "rb") as fh:
                        ret = cloudpickle.load(fh)
                else:
                    how = f"signal {-code}" if code < 0 else f"exit code {code}"
                    ret = died(sweep_config, overrides, how)
            runs.append(ret)
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs
