"""A `tfkit export` served with --prefer_tflite_model=true: model.tflite carries
TF SignatureDefs, so the server keeps the SavedModel's aliases, replays the
warmup requests (input `features`) and answers as LiteRT does for that file."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from tensorflow.core.framework import types_pb2

from serving_helpers import start


@pytest.fixture(scope="module")
def tflite_served(exported_model):
    # Warmup is on by default, as in TF Serving: a load that replays `features` requests.
    server = start(
        ["--model_name=logreg", f"--model_base_path={exported_model / 'logreg'}", "--prefer_tflite_model=true"]
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(tflite_served, client_of):
    return client_of(tflite_served)


@pytest.fixture(scope="module")
def heldout(exported_version):
    return np.load(exported_version / "assets.extra" / "heldout.npz")["features"].astype(np.float32)


def test_loads_with_stored_signatures_and_replays_warmup(tflite_served):
    log = tflite_served.log_lines()
    assert not [line for line in log if "No signature def found in TFLite model" in line]
    # TensorFlow's Python deprecation warnings (warmup's TFRecord reader) stay out of the server log.
    assert not [line for line in log if line.startswith("WARNING:tensorflow")]
    warmup = [line for line in log if "Finished reading warmup data" in line]
    assert len(warmup) == 1
    assert int(warmup[0].split("Number of warmup records read: ")[1].split(".")[0]) > 0


def test_metadata_shows_serving_default_with_the_savedmodel_aliases(client, exported_version):
    _, defs = client.signature_defs("logreg")
    assert list(defs.signature_def) == ["serving_default"]
    signature = defs.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert set(signature.inputs) == {"features"}
    assert set(signature.outputs) == {"probabilities", "logits", "classes"}
    runner = Interpreter(model_path=str(exported_version / "model.tflite")).get_signature_runner("serving_default")
    features = runner.get_input_details()["features"]
    assert signature.inputs["features"].name == features["name"]
    assert signature.inputs["features"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in signature.inputs["features"].tensor_shape.dim] == list(features["shape_signature"])
    assert signature.outputs["classes"].dtype == types_pb2.DT_INT64


@pytest.mark.parametrize("n", [1, 7, 400])
def test_predict_equals_litert_on_the_same_file(client, exported_version, heldout, n):
    batch = np.resize(heldout, (n, heldout.shape[1])).astype(np.float32)
    runner = Interpreter(model_path=str(exported_version / "model.tflite")).get_signature_runner("serving_default")
    expected = runner(features=batch)
    got = client.predict("logreg", {"features": batch})
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype
        np.testing.assert_array_equal(got[key], value)
