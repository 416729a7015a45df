import pytest

# torchvision loads triton, whose bundled LLVM segfaults when it is loaded after
# TensorFlow's; loaded first, the two live in one process. Tests of both backends
# share the pytest process, so torchvision is loaded before any test module.
import torchvision  # noqa: F401


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One prepared-data root for the session (digits is built into it on first use)."""
    return tmp_path_factory.mktemp("data")
