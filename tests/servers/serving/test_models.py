"""TF Serving's own test models through `python -m serving` over gRPC: metadata,
statuses, Predict/Classify/Regress/MultiInference values, version policies,
labels, and the error codes and messages of the real server."""

import json

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, inference_pb2, predict_pb2

from serving_helpers import TESTDATA, rpc_error

X = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def client(multi_server, client_of):
    return client_of(multi_server)


def expected_signatures(json_name: str):
    data = json.loads((TESTDATA / json_name).read_text())
    defs = get_model_metadata_pb2.SignatureDefMap()
    json_format.ParseDict(data["metadata"]["signature_def"], defs)
    return int(data["model_spec"]["version"]), defs


@pytest.mark.parametrize(
    "model,json_name",
    [
        ("half_plus_two", "half_plus_two_model_metadata.json"),
        ("two_specific", "saved_model_half_plus_two_2_versions_metadata.json"),
    ],
)
def test_metadata_matches_tf_serving(client, model, json_name):
    version, expected = expected_signatures(json_name)
    response, defs = client.signature_defs(model)
    assert response.model_spec.name == model
    assert response.model_spec.version.value == version
    assert defs == expected


def test_tf2_metadata_matches_tf_serving_apart_from_newer_defaults(client):
    # The JSON predates SignatureDef.defaults, which TF 2.21's loader now fills in
    # for the TF2 export; everything else must be identical.
    _, expected = expected_signatures("saved_model_half_plus_two_tf2_2_versions_metadata.json")
    _, defs = client.signature_defs("half_plus_two_tf2")
    assert set(defs.signature_def) == set(expected.signature_def)
    for key, signature in defs.signature_def.items():
        signature.ClearField("defaults")
        assert signature == expected.signature_def[key], key


def test_metadata_errors(client):
    assert (
        rpc_error(client.metadata, "half_plus_two", fields=()).details()
        == "GetModelMetadataRequest must specify at least one metadata_field"
    )
    error = rpc_error(client.metadata, "half_plus_two", fields=("nope",))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Metadata field nope is not supported")
    error = rpc_error(client.metadata, "nope")
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    )


@pytest.mark.parametrize("model,offset", [("half_plus_two", 2.0), ("half_plus_two_tf2", 2.0), ("half_plus_three", 3.0)])
def test_predict_values_and_model_spec(client, model, offset):
    response = client.predict_response(model, {"x": X})
    y = tf.make_ndarray(response.outputs["y"])
    np.testing.assert_allclose(y, 0.5 * X + offset)
    assert response.model_spec.name == model
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"
    # Default answers use the typed field, as Tensor::AsProtoField does.
    assert list(response.outputs["y"].float_val) == list((0.5 * X + offset).ravel())
    assert not response.outputs["y"].tensor_content


def test_predict_accepts_every_tensor_encoding(client):
    content = tf.make_tensor_proto(X)  # tensor_content bytes
    assert content.tensor_content
    typed = predict_pb2.PredictRequest().inputs["x"]
    typed.dtype = tf.float32.as_datatype_enum
    typed.tensor_shape.dim.add().size = 3
    typed.tensor_shape.dim.add().size = 1
    typed.float_val.extend([1.0, 2.0, 5.0])
    broadcast = tf.make_tensor_proto(4.0, shape=[2, 1])  # one value fills the shape
    assert list(broadcast.float_val) == [4.0]
    for proto, expected in (
        (content, 0.5 * X + 2),
        (typed, 0.5 * X + 2),
        (broadcast, np.full((2, 1), 4.0, np.float32)),
    ):
        np.testing.assert_allclose(client.predict("half_plus_two", {"x": proto})["y"], expected)


def test_predict_any_batch_size(client):
    for n in (1, 7, 1000):
        x = np.arange(n, dtype=np.float32).reshape(n, 1)
        np.testing.assert_allclose(client.predict("half_plus_two", {"x": x})["y"], 0.5 * x + 2)


def test_predict_other_signature_and_output_filter(client):
    out = client.predict("half_plus_two", {"inputs": X}, signature="regress_x2_to_y3")
    np.testing.assert_allclose(out["outputs"], 0.5 * X + 3)
    response = client.predict_response("half_plus_two", {"x": X}, output_filter=["y"])
    assert list(response.outputs) == ["y"]


def test_predict_errors_match_tf_serving(client):
    cases = [
        (
            dict(model="nope", inputs={"x": X}),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            dict(model="half_plus_two", inputs={"x": X}, version=999),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(half_plus_two, 999)",
        ),
        (
            dict(model="half_plus_two", inputs={"x": X}, signature="x"),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "x" not found.',
        ),
        (
            dict(model="half_plus_two", inputs={"x": X, "z": X}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. "
            "Missing but required: {}.",
        ),
        (
            dict(model="half_plus_two", inputs={"z": X}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input tensor alias not found in signature: z. Inputs expected to be in the set {x}.",
        ),
        (
            dict(model="half_plus_two", inputs={"x": np.array([[b"a"]], dtype=object)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expects arg[0] to be float but string is provided",
        ),
        (
            dict(model="half_plus_two", inputs={"x": X}, output_filter=["nope"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "output tensor alias not found in signature: nope Outputs expected to be in the set {y}.",
        ),
        (
            dict(model="half_plus_two", inputs={"x": X}, output_filter=["y", "y"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "duplicate output tensor alias: y",
        ),
        (
            dict(model="two_all", inputs={"x": X}, label="nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: nope",
        ),
        (dict(model="", inputs={"x": X}), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ]
    for kwargs, code, message in cases:
        model = kwargs.pop("model")
        error = rpc_error(client.predict, model, **kwargs)
        assert (error.code(), error.details()) == (code, message), (model, kwargs)


def test_missing_input_is_invalid_argument(client):
    error = rpc_error(client.predict, "half_plus_two", {})
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("input size does not match signature: 0!=1")


def test_classify_and_regress(client):
    rows = [{"x": [1.0]}, {"x": [4.0]}]
    result = client.classify("half_plus_two", "classify_x_to_y", rows)
    assert [c.classes[0].score for c in result.result.classifications] == [2.5, 4.0]
    assert result.model_spec.signature_name == "classify_x_to_y"
    assert result.model_spec.version.value == 123
    result = client.regress("half_plus_two", "regress_x_to_y", rows)
    assert [r.value for r in result.result.regressions] == [2.5, 4.0]
    result = client.regress("half_plus_two", "regress_x_to_y2", rows)
    assert [r.value for r in result.result.regressions] == [3.5, 5.0]  # y2 = 0.5x + 3


def test_regress_examples_with_context(client):
    from tensorflow_serving.apis import regression_pb2

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "regress_x_to_y"
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["x"].float_list.value.append(6.0)
    with_context.examples.add()  # takes x from the context
    with_context.examples.add().features.feature["x"].float_list.value.append(2.0)  # overrides it
    result = client.prediction.Regress(request, timeout=30).result
    assert [r.value for r in result.regressions] == [5.0, 3.0]


def test_classify_regress_errors(client):
    rows = [{"x": [1.0]}]
    error = rpc_error(client.classify, "half_plus_two", "nope", rows)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "No signature was found with the name: nope",
    )
    error = rpc_error(client.regress, "half_plus_two", "regress_x_to_y", [])
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")
    # serving_default has input "x", not "inputs".
    error = rpc_error(client.classify, "half_plus_two", "", rows)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("No classification inputs found in SignatureDef")


def test_multi_inference(client):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("classify_x_to_y", "tensorflow/serving/classify"),
        ("regress_x_to_y2", "tensorflow/serving/regress"),
    ):
        task = request.tasks.add()
        task.model_spec.name = "half_plus_two"
        task.model_spec.signature_name = signature
        task.method_name = method
    client.examples(request.input.example_list.examples, [{"x": [2.0]}, {"x": [6.0]}])
    response = client.prediction.MultiInference(request, timeout=30)
    classify, regress = response.results
    assert [c.classes[0].score for c in classify.classification_result.classifications] == [3.0, 5.0]
    assert [r.value for r in regress.regression_result.regressions] == [4.0, 6.0]
    assert regress.model_spec.signature_name == "regress_x_to_y2"
    request.tasks[1].model_spec.name = "half_plus_three"
    error = rpc_error(client.prediction.MultiInference, request)
    assert error.details() == "All ModelSpecs in a MultiInferenceRequest must access the same model name."


def test_version_policies(client):
    assert client.states("two_latest") == {124: "AVAILABLE"}
    assert client.states("two_all") == {123: "AVAILABLE", 124: "AVAILABLE"}
    assert client.states("two_specific") == {123: "AVAILABLE"}
    assert client.predict_response("two_all", {"x": X}).model_spec.version.value == 124
    assert client.predict_response("two_all", {"x": X}, version=123).model_spec.version.value == 123


def test_version_labels(client):
    for label, version in (("stable", 123), ("canary", 124)):
        response = client.predict_response("two_all", {"x": X}, label=label)
        assert response.model_spec.version.value == version


def test_model_status(client):
    status = client.status("half_plus_two")
    (entry,) = status.model_version_status
    assert (entry.version, entry.state, entry.status.error_code, entry.status.error_message) == (123, 30, 0, "")
    assert client.status("two_all", version=124).model_version_status[0].version == 124
    error = rpc_error(client.status, "two_all", version=5)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find version 5 of model two_all")
    error = rpc_error(client.status, "nope")
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope")


def test_stateful_counter_model(client):
    counter = client.signature_defs("counter")[1].signature_def
    assert {"get_counter", "incr_counter", "reset_counter"} <= set(counter)
    client.predict("counter", {}, signature="reset_counter")
    values = [float(client.predict("counter", {}, signature="incr_counter")["output"]) for _ in range(3)]
    assert values == [1.0, 2.0, 3.0]


def test_health_service(multi_server, channel_of):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel_of(multi_server))
    for service in ("", "ModelService", "PredictionService"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_profiler_service_on_the_grpc_port(multi_server, client, tmp_path):
    import threading

    done = threading.Event()

    def traffic():  # something to trace, as TF Serving's own profiler test does
        while not done.is_set():
            client.predict("half_plus_two", {"x": X})

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        tf.profiler.experimental.client.trace(f"grpc://{multi_server.grpc_target}", str(tmp_path), 500, "", 3)
    finally:
        done.set()
        worker.join()
    assert list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))
