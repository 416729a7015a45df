import os

import pytest


def _pin_threads() -> None:
    """Under pytest-xdist, each worker (and every run it starts as a subprocess, which
    inherits the environment) gets its share of the cores: two workers each running
    PyTorch's or TensorFlow's default pool of one thread per core oversubscribe the
    machine, and a spinning pool turns a 10 s epoch into 95 s. Set before any framework
    is imported; a variable the user set is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return
    threads = str(max(1, len(os.sched_getaffinity(0)) // workers))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    # TensorFlow's own pools (read at its first session) and XLA's CPU pool (JAX)
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    if "intra_op_parallelism_threads" not in os.environ.get("XLA_FLAGS", ""):
        pool = f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={threads}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {pool}".strip()


_pin_threads()

# torchvision loads triton, whose bundled LLVM segfaults when it is loaded after
# TensorFlow's; loaded first, the two live in one process. Tests of both backends
# share the pytest process, so torchvision is loaded before any test module.
import torchvision  # noqa: F401, E402  (after the thread pins above, which it reads)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One prepared-data root for the session (digits is built into it on first use)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def hydra_fresh_version_base(hydra_restore_singletons):
    """Hydra's plugin suites assume a process in which no app set a version_base (their
    apps then run with job.chdir=true); helpers.compose sets 1.3 for the session, so
    these tests start from a fresh VersionBase (restored afterwards with the other
    singletons)."""
    from hydra.version import _UNSPECIFIED_, VersionBase

    VersionBase.instance().version_base = _UNSPECIFIED_


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_dir):
    """trained_run(framework) -> (run directory, the finished CompletedProcess): SMOKE_RUN
    trained once per session (per test worker) through the real command line. Tests only
    read it; a test that damages or continues a run works on a copy (copy_run)."""
    from helpers import SMOKE_RUN, run_cli

    done: dict = {}

    def get(framework: str = "pytorch"):
        if framework not in done:
            run_dir = tmp_path_factory.mktemp(f"trained-{framework}") / "run"
            out = run_cli(*SMOKE_RUN, f"framework={framework}", f"hydra.run.dir={run_dir}", f"data_dir={data_dir}")
            assert out.returncode == 0, out.stderr[-3000:]
            done[framework] = (run_dir, out)
        return done[framework]

    return get
