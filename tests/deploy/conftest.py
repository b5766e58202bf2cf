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
