"""Shared session fixtures: `trained_run` (RUN dir, seed 0, defaults), `exported_model` (BASE with logreg/1, all quantized variants), `exported_version` (BASE/logreg/1).

Each is built once per test session, in-process, so no test trains or converts
on its own. Treat them as read-only: copy into tmp_path before changing anything.
"""

import os
import shutil
from pathlib import Path

import pytest

from toolkit.tfenv import import_tf

from tf_serving_testdata import TESTDATA

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Test modules import tensorflow_serving (and with it TensorFlow) at collection;
# importing it here first, quietly, keeps its start-up banner out of the test log.
import_tf()

MODEL_NAME = "logreg"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run folder from `tfkit train --seed 0` with the defaults (10 steps, full batch)."""
    from toolkit.training.rundir import train_to_dir

    run_dir = tmp_path_factory.mktemp("run")
    train_to_dir(run_dir, seed=0)
    return run_dir


@pytest.fixture(scope="session")
def exported_model(trained_run, tmp_path_factory):
    """A TF Serving model base path holding logreg/1 exported from `trained_run`,
    with model.tflite and the dynamic, float16 and int8 variants."""
    from toolkit.artifacts.export import export_model
    from toolkit.artifacts.tflite import QUANTIZATIONS

    base = tmp_path_factory.mktemp("models")
    export_model(trained_run, base, MODEL_NAME, quantize=QUANTIZATIONS)
    return base


@pytest.fixture(scope="session")
def exported_version(exported_model):
    """The version folder BASE/logreg/1 of `exported_model`."""
    return exported_model / MODEL_NAME / "1"


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
