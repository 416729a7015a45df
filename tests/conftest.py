import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One prepared-data root for the session (digits is built into it on first use)."""
    return tmp_path_factory.mktemp("data")
