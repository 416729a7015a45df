import pytest

# torchvision loads triton, whose bundled LLVM segfaults when it is loaded after
# TensorFlow's; loaded first, the two live in one process. Tests of both backends
# share the pytest process, so torchvision is loaded before any test module.
import torchvision  # noqa: F401


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
