"""Hydra launcher that runs each job of a local sweep in a fresh Python process.

Hydra's basic launcher runs every job in the launching process. For this benchmark
that is wrong three ways: TensorFlow keeps the GPU memory it took, so a PyTorch run
after a Keras run starves; framework globals (mixed-precision policy, XLA caches,
seeds) leak from one run into the next; and a crash in native code (a segfault)
would end the whole sweep. One process per run removes all three. Output streams to
the terminal as for a single run; the run writes its own directory as usual.
"""

import logging
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher

from hydra_plugins.benchmark_sweeper import job_run_dir

log = logging.getLogger("benchmark.sweep")


@dataclass
class ProcessLauncherConf:
    _target_: str = "hydra_plugins.benchmark_sweeper.process_launcher.ProcessLauncher"
    module: str = "benchmark"  # what each job runs: python -m <module> <overrides>


ConfigStore.instance().store(group="hydra/launcher", name="process", node=ProcessLauncherConf, provider="benchmark")


def _quoted(value: str) -> str:
    """A Hydra override value that may contain '=' and ',' (run directories do)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ProcessLauncher(Launcher):
    def __init__(self, module: str = "benchmark") -> None:
        self.module = module
        self.hydra_context = None
        self.config = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.config = hydra_context, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from benchmark.rundir import RunDir

        returns = []
        for offset, overrides in enumerate(job_overrides):
            run_dir = job_run_dir(self.hydra_context, self.config, overrides)
            log.info("#%d : %s", initial_job_idx + offset, " ".join(overrides))
            cmd = [sys.executable, "-m", self.module, *overrides, f"hydra.run.dir={_quoted(str(run_dir))}"]
            code = subprocess.call(cmd)
            rd = RunDir(run_dir)
            status: Optional[dict] = rd.read_status()
            if code != 0:  # a signal or a failed start: say so for the sweep report
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                status = rd.fail_unreported(f"the run's process ended with {how} without reporting")
            value = rd.read_test() if status and status.get("state") == "completed" else status
            returns.append(JobReturn(overrides=list(overrides), working_dir=str(run_dir),
                                     status=JobStatus.COMPLETED, _return_value=value))
        return returns
