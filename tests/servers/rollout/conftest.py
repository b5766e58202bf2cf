"""Shared by the rollout tests: `launcher` starts server replicas forked from one process that
has already imported the server (rollout_replicas)."""

import pytest
from rollout_replicas import Launcher


@pytest.fixture(scope="session")
def launcher(tmp_path_factory):
    launcher = Launcher(tmp_path_factory.mktemp("replica-logs"))
    yield launcher
    launcher.kill_all()
