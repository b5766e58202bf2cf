"""--prefer_tflite_model: model.tflite served by LiteRT with TF Serving's signatures,
a SavedModel-only version falling back to TensorFlow, and
--enable_serialization_as_tensor_content answers."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

X = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def client(tflite_server, client_of):
    return client_of(tflite_server)


def test_generated_signature_for_a_model_without_sigdefs(client):
    _, defs = client.signature_defs("tflite")
    assert list(defs.signature_def) == ["serving_default"]
    signature = defs.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert set(signature.inputs) == {"x"} and set(signature.outputs) == {"y"}
    assert signature.inputs["x"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in signature.inputs["x"].tensor_shape.dim] == [1, 1]


def test_stored_sigdef_is_used_with_tensor_names_resolved(client):
    _, defs = client.signature_defs("tflite_sigdef")
    signature = defs.signature_def["serving_default"]
    assert set(signature.inputs) == {"x"} and set(signature.outputs) == {"y"}
    assert signature.inputs["x"].name == "tflite_input"  # "tflite_input:0" in the file


@pytest.mark.parametrize("model", ["tflite", "tflite_sigdef", "saved_model"])
def test_predict_any_batch_answers_tensor_content(client, model):
    for x in (X, X[:1], np.zeros((0, 1), np.float32)):
        response = client.predict_response(model, {"x": x})
        y = response.outputs["y"]
        if x.size:
            assert y.tensor_content and not y.float_val
        np.testing.assert_allclose(tf.make_ndarray(y), 0.5 * x + 2)
        assert response.model_spec.version.value == 123
