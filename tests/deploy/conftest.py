"""Shared fixtures for the deploy tests: a models folder built from TF Serving's test models."""

import shutil
from pathlib import Path

import pytest

TESTDATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "tf_serving"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """BASE with two models: `plus` (v1 = 0.5x+2, v2 = 0.5x+3, so answers tell versions
    apart) and `two` (v123 = 0.5x+2)."""
    testdata = TESTDATA.resolve()
    if not testdata.is_dir():
        pytest.fail(f"TF Serving test models missing at {testdata}")
    base = tmp_path_factory.mktemp("deploy_models")
    shutil.copytree(testdata / "saved_model_half_plus_two_cpu" / "00000123", base / "plus" / "1")
    shutil.copytree(testdata / "saved_model_half_plus_three" / "00000123", base / "plus" / "2")
    shutil.copytree(testdata / "saved_model_half_plus_two_cpu" / "00000123", base / "two" / "123")
    return base


@pytest.fixture(scope="session")
def fleet_plan(models_dir):
    """The deployment the live tests serve: `plus` with all versions, stable=1 and canary=2,
    and `two` with its latest version."""
    from toolkit.deploy import plan_models

    return plan_models([models_dir / "plus", models_dir / "two"], ["plus:all"],
                       ["plus:stable=1", "plus:canary=2"])


@pytest.fixture(scope="session")
def live_server(fleet_plan, tmp_path_factory):
    """`python -m serving` started with a generated models.config and the generated flags
    (ports aside, which LocalServer picks). Yields (server, config_path)."""
    from toolkit.deploy import build_config, render_config, server_flags, write_atomic
    from toolkit.local_server import LocalServer

    config_path = write_atomic(tmp_path_factory.mktemp("live") / "models.config",
                               render_config(build_config(fleet_plan)))
    flags = server_flags(fleet_plan, str(config_path), grpc_port=None, rest_port=None)
    with LocalServer(flags, rest=True, timeout=120) as server:
        yield server, config_path
