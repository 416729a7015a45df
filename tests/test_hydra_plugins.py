"""Hydra's own plugin test suites, instantiated as Hydra's and hydra-submitit-launcher's
plugins instantiate them, against this project's plugins: the process launcher, the
resumable sweeper and, on the local SLURM cluster (tests/test_slurm.py), slurm_a40.

The suites (hydra.test_utils.launcher_common_tests) run Hydra's test apps, not the
benchmark: a launcher must run whatever task function Hydra hands it, give every job
its number and id (so `hydra.sweep.subdir=${hydra.job.num}` works), pass every
`hydra.*` override to the job, and return complete JobReturns.
"""

import pytest
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, IntegrationTestSuite, LauncherTestSuite

pytestmark = [pytest.mark.suite, pytest.mark.usefixtures("hydra_fresh_version_base")]


# The launcher suite once, as the benchmark composes it (conf/config.yaml: the process
# launcher under the resumable sweeper); the sweeper's own suite below.
@pytest.mark.parametrize("launcher_name, overrides", [("process", ["hydra/sweeper=resumable"])])
class TestProcessLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    "launcher_name, overrides", [("basic", ["hydra/sweeper=resumable", "hydra.sweeper.max_batch_size=2"])]
)
class TestResumableSweeper(BatchedSweeperTestSuite):
    pass


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [({}, ["-m", "hydra/launcher=process"])])
class TestProcessLauncherIntegration(IntegrationTestSuite):
    pass
