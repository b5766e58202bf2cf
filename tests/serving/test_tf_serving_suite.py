"""Cases from TF Serving's own tensorflow_model_server_test.py, with the server
started the way that suite starts the binary (REST port and timeout, a UNIX
socket, gRPC channel arguments) and readiness probed the way it probes it."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import HALF_PLUS_TWO, Client, model_entry, start, write_config
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def saved_model_save(base):
    """test_tf_saved_model_save: an unknown-rank input, y = v1 * v2 * x."""
    root = tf.train.Checkpoint()
    root.v1, root.v2 = tf.Variable(3.0), tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    tf.saved_model.save(root, str(base / "00000123"),
                        root.f.get_concrete_function(tf.TensorSpec(None, tf.float32)))
    return base


def multiple_signatures(base):
    """test_tf_saved_model_save_multiple_signatures: scalar outputs, two signatures."""
    root = tf.train.Checkpoint()
    root.f = tf.function(lambda x: {"y": 1.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    root.g = tf.function(lambda x: {"y": 2.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(root, str(base / "00000123"),
                        signatures={"serving_default": root.f, "custom_signature_key": root.g})
    return base


@pytest.fixture(scope="module")
def suite_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    config = write_config(root / "models.config", [
        model_entry("default", HALF_PLUS_TWO),
        model_entry("saved_model_save", saved_model_save(root / "save")),
        model_entry("multiple_signatures", multiple_signatures(root / "multi")),
    ])
    socket_path = root / "tf-serving.sock"
    server = start([f"--model_config_file={config}", "--rest_api_timeout_in_ms=5000",
                    f"--grpc_socket_path={socket_path}",
                    "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,"
                    "grpc.lb_policy_name=grpclb,grpc.so_reuseaddr=1"], rest=True)
    yield server, socket_path
    server.stop()


def verify_predict(address, expected, model="default", signature="serving_default",
                   specify_output=True, batch_input=False):
    """The suite's VerifyPredictRequest: x = [2.0] as a typed field."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    with grpc.insecure_channel(address) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 5.0)
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert list(result.outputs["y"].float_val) == [expected]
    assert (result.model_spec.name, result.model_spec.signature_name,
            result.model_spec.version.value) == (model, signature, 123)


def test_readiness_probe_sees_servable_in_the_error(suite_server):
    server, _ = suite_server
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "intentionally_missing_model"
    with grpc.insecure_channel(f"localhost:{server.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 5.0)
    assert "Servable" in info.value.details()


@pytest.mark.parametrize("specify_output", [True, False])
@pytest.mark.parametrize("batch_input", [False, True])
def test_predict_saved_model(suite_server, specify_output, batch_input):
    verify_predict(suite_server[0].grpc_target, 3.0, specify_output=specify_output,
                   batch_input=batch_input)


def test_predict_over_the_unix_socket(suite_server):
    verify_predict(f"unix:{suite_server[1]}", 3.0, specify_output=False)


def test_tf_saved_model_save(suite_server):
    verify_predict(suite_server[0].grpc_target, 12.0, model="saved_model_save",
                   specify_output=False)


def test_tf_saved_model_save_multiple_signatures(suite_server):
    address = suite_server[0].grpc_target
    verify_predict(address, 2.0, model="multiple_signatures", signature="custom_signature_key")
    verify_predict(address, 1.0, model="multiple_signatures")


def test_status_and_metadata_for_the_default_model(suite_server, client_of):
    client: Client = client_of(suite_server[0])
    (status,) = client.status("default").model_version_status
    assert (status.version, status.status.error_code) == (123, 0)
    response = client.metadata("default")
    assert response.model_spec.name == "default"
    assert response.model_spec.version.value == 123
    assert list(response.metadata) == ["signature_def"]
    x = np.array([[2.0]], np.float32)
    assert client.predict("default", {"x": x})["y"].tolist() == [[3.0]]
