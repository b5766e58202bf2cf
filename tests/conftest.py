"""Shared session fixtures: `trained_run` (RUN dir, seed 0, defaults), `exported_model` (BASE with logreg/1, all quantized variants), `exported_version` (BASE/logreg/1).

Each is built once per test session, in-process, so no test trains or converts
on its own. Treat them as read-only: copy into tmp_path before changing anything.
"""

import os

import pytest

from toolkit.tfenv import tf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Test modules import tensorflow_serving (and with it TensorFlow) at collection;
# importing it here first, quietly, keeps its start-up banner out of the test log.
tf()

MODEL_NAME = "logreg"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run folder from `tfkit train --seed 0` with the defaults (10 steps, full batch)."""
    from toolkit.rundir import train_to_dir

    run_dir = tmp_path_factory.mktemp("run")
    train_to_dir(run_dir, seed=0)
    return run_dir


@pytest.fixture(scope="session")
def exported_model(trained_run, tmp_path_factory):
    """A TF Serving model base path holding logreg/1 exported from `trained_run`,
    with model.tflite and the dynamic, float16 and int8 variants."""
    from toolkit.export import QUANTIZATIONS, export_model

    base = tmp_path_factory.mktemp("models")
    export_model(trained_run, base, MODEL_NAME, quantize=QUANTIZATIONS)
    return base


@pytest.fixture(scope="session")
def exported_version(exported_model):
    """The version folder BASE/logreg/1 of `exported_model`."""
    return exported_model / MODEL_NAME / "1"
