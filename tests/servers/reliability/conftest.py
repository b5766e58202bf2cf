"""Servers for the reliability tests, one per scenario, each started once.

The soak and fuzz tests use the shared `logreg_server` (tests/servers/conftest.py),
which serves the root `exported_model` (read-only) with REST. `fault_server` serves a writable copy whose versions
the fault tests add, break and delete; it runs without root's permission
override so an unreadable folder is unreadable to it, and listens on every
interface as the real binary does.
"""

import shutil
import stat
import sys

import pytest

from reliability.faults import permission_honouring_prefix
from reliability.reference import ModelReference
from toolkit.serve import LocalServer

from reliability_helpers import MODEL


@pytest.fixture(scope="session")
def reference(exported_model):
    """Weights of logreg/1 of the shared export."""
    return ModelReference.from_model_dir(exported_model / MODEL)


@pytest.fixture(scope="session")
def fault_base(exported_version, tmp_path_factory):
    """A writable model base holding logreg/1 (a copy of the shared export)."""
    base = tmp_path_factory.mktemp("fault-models")
    shutil.copytree(exported_version, base / MODEL / "1")
    return base


@pytest.fixture(scope="session")
def permission_prefix():
    """Command prefix that makes file permissions apply to the server (None: impossible here)."""
    return permission_honouring_prefix()


@pytest.fixture(scope="session")
def fault_server(fault_base, permission_prefix, tmp_path_factory):
    """python -m serving polling `fault_base` every second, no load retries."""
    binary = None
    if permission_prefix:
        wrapper = tmp_path_factory.mktemp("bin") / "serving-without-dac-override"
        command = " ".join(permission_prefix + [sys.executable, "-m", "serving"])
        wrapper.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        binary = str(wrapper)
    args = [
        f"--model_name={MODEL}",
        f"--model_base_path={fault_base / MODEL}",
        "--file_system_poll_wait_seconds=1",
        "--max_num_load_retries=0",
    ]
    # host=None: every interface, as tensorflow_model_server listens (tested on this server).
    with LocalServer(args, binary=binary, rest=True, timeout=120, host=None) as server:
        yield server
