"""gRPC status codes, messages and protos as TF Serving's C++ suites check
them (predict_util_test, get_model_metadata_impl_test,
get_model_status_impl_test, multi_inference_test, classifier/regressor tests),
here through the wire against `python -m serving`."""

import json

import grpc
import pytest
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from conformance_helpers import HANDLER_MODELS, LABEL, RPC_TIMEOUT, TESTDATA

TWO_VERSIONS_MODEL = HANDLER_MODELS[0][0]  # only version 123 aspired, labelled
BOTH_VERSIONS_MODEL = HANDLER_MODELS[1][0]  # 123 and 124 aspired
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
REGRESS = "tensorflow/serving/regress"
CLASSIFY = "tensorflow/serving/classify"


@pytest.fixture(scope="module")
def stubs(handler, server, channel):
    """(PredictionService, ModelService) stubs of the default and handler servers."""

    def pair(address):
        return (
            prediction_service_pb2_grpc.PredictionServiceStub(channel(address)),
            model_service_pb2_grpc.ModelServiceStub(channel(address)),
        )

    return {"default": pair(server("default").grpc_address), "handler": pair(handler.grpc_address)}


def rpc_error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, RPC_TIMEOUT)
    return info.value.code(), info.value.details()


def float_input(request, values, name="x", dtype=types_pb2.DT_FLOAT):
    tensor = request.inputs[name]
    tensor.dtype = dtype
    tensor.float_val.extend(values)
    tensor.tensor_shape.dim.add().size = len(values)
    return request


def predict_request(model="default", version=None, label=None, signature=""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    return request


# --- Predict ---------------------------------------------------------------


def test_predict_without_model_name_is_invalid_argument(stubs):
    assert rpc_error(stubs["default"][0].Predict, predict_pb2.PredictRequest()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ModelSpec has no name specified.",
    )


def test_predict_without_signature_name_answers_as_serving_default(stubs):
    response = stubs["default"][0].Predict(float_input(predict_request(), [2.0]), RPC_TIMEOUT)
    assert (response.model_spec.signature_name, list(response.outputs["y"].float_val)) == ("serving_default", [3.0])


@pytest.mark.parametrize(
    "version,label,message",
    [
        (None, None, "Servable not found for request: Latest(nonexistent_model)"),
        (7, None, "Servable not found for request: Specific(nonexistent_model, 7)"),
    ],
)
def test_predict_unknown_model_is_not_found(stubs, version, label, message):
    request = float_input(predict_request("nonexistent_model", version, label), [2.0])
    assert rpc_error(stubs["default"][0].Predict, request) == (grpc.StatusCode.NOT_FOUND, message)


def test_predict_version_not_aspired_is_not_found(stubs):
    request = float_input(predict_request(TWO_VERSIONS_MODEL, version=124), [2.0])
    assert rpc_error(stubs["handler"][0].Predict, request) == (
        grpc.StatusCode.NOT_FOUND,
        f"Servable not found for request: Specific({TWO_VERSIONS_MODEL}, 124)",
    )


def test_predict_unknown_label_is_invalid_argument(stubs):
    request = float_input(predict_request(TWO_VERSIONS_MODEL, label="Version_Nonexistent"), [2.0])
    code, message = rpc_error(stubs["handler"][0].Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Unrecognized servable version label: Version_Nonexistent" in message


def test_predict_by_label_answers_with_the_labelled_version(stubs):
    request = float_input(predict_request(TWO_VERSIONS_MODEL, label=LABEL), [1.0, 2.0])
    response = stubs["handler"][0].Predict(request, RPC_TIMEOUT)
    assert list(response.outputs["y"].float_val) == [2.5, 3.0]
    assert (response.model_spec.name, response.model_spec.version.value) == (TWO_VERSIONS_MODEL, 123)


def test_predict_unknown_signature_is_failed_precondition(stubs):
    request = float_input(predict_request(signature="nope"), [2.0])
    assert rpc_error(stubs["default"][0].Predict, request) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    )


def test_predict_empty_input_list_is_invalid_argument(stubs):
    assert rpc_error(stubs["default"][0].Predict, predict_request()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 0!=1 len({}) != len({x}). Sent extra: {}. Missing but required: {x}.",
    )


def test_predict_inputs_not_matching_the_signature(stubs):
    request = predict_request(version=123)
    request.inputs["unknown_key1"].dtype = types_pb2.DT_STRING
    request.inputs["unknown_key1"].string_val.append(b"any_value")
    request.inputs["unknown_key1"].tensor_shape.dim.add().size = 1
    float_input(request, [1.0], name="unknown_key2")
    code, message = rpc_error(stubs["default"][0].Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Sent extra: {unknown_key1,unknown_key2}" in message
    assert "Missing but required: {x}" in message


def test_predict_wrong_dtype_bool(stubs):
    request = predict_request(version=123)
    request.inputs["x"].dtype = types_pb2.DT_BOOL
    request.inputs["x"].bool_val.append(True)
    code, message = rpc_error(stubs["default"][0].Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expects arg[0] to be float but bool is provided" in message


def test_predict_wrong_dtype_string(stubs):
    request = predict_request(version=123)
    request.inputs["x"].dtype = types_pb2.DT_STRING
    request.inputs["x"].string_val.append(b"any_value")
    request.inputs["x"].tensor_shape.dim.add().size = 1
    request.output_filter.append("y")
    code, message = rpc_error(stubs["default"][0].Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "to be float but string is provided" in message


def test_predict_output_filters(stubs):
    request = predict_request(version=123)
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)  # a scalar, as the C++ test sends it
    request.output_filter.append("output_filter")
    code, message = rpc_error(stubs["default"][0].Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: output_filter" in message

    del request.output_filter[:]
    request.output_filter.append("y")
    response = stubs["default"][0].Predict(request, RPC_TIMEOUT)
    assert list(response.outputs["y"].float_val) == [3.0]
    assert list(response.outputs) == ["y"]

    request.output_filter.append("y")
    code, message = rpc_error(stubs["default"][0].Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "duplicate output tensor alias: y" in message


@pytest.mark.parametrize(
    "signature,expected",
    [
        ("regress_x_to_y", {"outputs": 3.0}),
        ("classify_x_to_y", {"scores": 3.0}),
    ],
)
def test_predict_through_regression_and_classification_signatures(stubs, signature, expected):
    """PredictionWithNamedRegression/ClassificationSignature: Predict feeds
    serialized tf.Examples to such signatures by their input alias."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    example.features.feature["x"].float_list.value.append(2.0)
    request = predict_request(version=123, signature=signature)
    request.inputs["inputs"].dtype = types_pb2.DT_STRING
    request.inputs["inputs"].string_val.append(example.SerializeToString())
    request.inputs["inputs"].tensor_shape.dim.add().size = 1
    response = stubs["default"][0].Predict(request, RPC_TIMEOUT)
    assert {alias: list(t.float_val) for alias, t in response.outputs.items()} == {
        alias: [value] for alias, value in expected.items()
    }
    assert response.model_spec.signature_name == signature


# --- Classify / Regress / MultiInference -----------------------------------


@pytest.mark.parametrize(
    "call,request_type",
    [
        ("Classify", classification_pb2.ClassificationRequest),
        ("Regress", regression_pb2.RegressionRequest),
    ],
)
def test_classify_and_regress_empty_input(stubs, call, request_type):
    request = request_type()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y" if call == "Classify" else "regress_x_to_y"
    code, message = rpc_error(getattr(stubs["default"][0], call), request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Input is empty" in message


def multi_request(*tasks, model="default"):
    request = inference_pb2.MultiInferenceRequest()
    for name, signature, method in tasks:
        task = request.tasks.add()
        task.model_spec.name = name or model
        task.model_spec.signature_name = signature
        task.method_name = method
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.append(2.0)
    return request


@pytest.mark.parametrize(
    "tasks,code,message",
    [
        (
            [(None, "ThisSignatureDoesNotExist", REGRESS)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Requested signature not found in model graph: ThisSignatureDoesNotExist",
        ),
        (
            [(None, "regress_x_to_y", REGRESS), ("ModelDoesNotExist", "regress_x_to_y", REGRESS)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "must access the same model name",
        ),
        (
            [(None, "regress_x_to_y", REGRESS), (None, "regress_x_to_y", REGRESS)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: regress_x_to_y",
        ),
        (
            [(None, "serving_default", "tensorflow/serving/predict")],
            grpc.StatusCode.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
    ],
)
def test_multi_inference_errors(stubs, tasks, code, message):
    got_code, got_message = rpc_error(stubs["default"][0].MultiInference, multi_request(*tasks))
    assert got_code == code
    assert message in got_message


def test_multi_inference_missing_input(stubs):
    request = multi_request((None, "regress_x_to_y", REGRESS))
    request.ClearField("input")
    code, message = rpc_error(stubs["default"][0].MultiInference, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Input is empty" in message


def test_multi_inference_classify_and_regress_of_two_signatures(stubs):
    request = multi_request(
        (None, "regress_x_to_y", REGRESS), (None, "regress_x_to_y2", REGRESS), (None, "classify_x_to_y", CLASSIFY)
    )
    response = stubs["default"][0].MultiInference(request, RPC_TIMEOUT)
    assert [r.regression_result.regressions[0].value for r in response.results[:2]] == [3.0, 4.0]
    assert response.results[2].classification_result.classifications[0].classes[0].score == 3.0


# --- GetModelMetadata -------------------------------------------------------


def metadata_request(model, version=None, fields=("signature_def",)):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    if model is not None:  # "" makes a model_spec without a name
        request.model_spec.SetInParent()
        request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    request.metadata_field.extend(fields)
    return request


@pytest.mark.parametrize(
    "request_args,code,message",
    [
        (
            ("default", None, ()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "GetModelMetadataRequest must specify at least one metadata_field",
        ),
        (
            ("default", None, ("some_stuff",)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Metadata field some_stuff is not supported",
        ),
        ((None, None), grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
        (("", None), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
        (("test", None), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(test)"),
    ],
)
def test_metadata_errors(stubs, request_args, code, message):
    assert rpc_error(stubs["default"][0].GetModelMetadata, metadata_request(*request_args)) == (code, message)


@pytest.mark.parametrize(
    "server_name,model,expected_file",
    [
        ("default", "default", "half_plus_two_model_metadata.json"),
        ("handler", TWO_VERSIONS_MODEL, "saved_model_half_plus_two_2_versions_metadata.json"),
    ],
)
def test_metadata_signature_defs_match_tf_serving(stubs, server_name, model, expected_file):
    """The SignatureDefMap equals the one TF Serving reports for the same model
    (its *_metadata.json), and model_spec echoes the request with the version."""
    response = stubs[server_name][0].GetModelMetadata(metadata_request(model, 123), RPC_TIMEOUT)
    assert (response.model_spec.name, response.model_spec.version.value) == (model, 123)
    assert list(response.metadata) == ["signature_def"]
    received = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(received)
    expected = get_model_metadata_pb2.SignatureDefMap()
    document = json.loads((TESTDATA / expected_file).read_text())
    json_format.ParseDict(document["metadata"]["signature_def"], expected)
    assert received == expected


# --- GetModelStatus ---------------------------------------------------------


def status_request(model=None, version=None):
    request = get_model_status_pb2.GetModelStatusRequest()
    if model is not None:
        request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    return request


def test_status_without_model_spec_is_invalid_argument(stubs):
    assert rpc_error(stubs["handler"][1].GetModelStatus, status_request())[0] == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "model,version,message",
    [
        ("nonexistent_model", None, "Could not find any versions of model nonexistent_model"),
        (BOTH_VERSIONS_MODEL, 125, f"Could not find version 125 of model {BOTH_VERSIONS_MODEL}"),
    ],
)
def test_status_not_found(stubs, model, version, message):
    assert rpc_error(stubs["handler"][1].GetModelStatus, status_request(model, version)) == (
        grpc.StatusCode.NOT_FOUND,
        message,
    )


def test_status_all_versions(stubs):
    response = stubs["handler"][1].GetModelStatus(status_request(BOTH_VERSIONS_MODEL), RPC_TIMEOUT)
    assert sorted(s.version for s in response.model_version_status) == [123, 124]
    for status in response.model_version_status:
        assert (status.state, status.status.error_code, status.status.error_message) == (AVAILABLE, 0, "")


def test_status_single_version(stubs):
    response = stubs["handler"][1].GetModelStatus(status_request(BOTH_VERSIONS_MODEL, 123), RPC_TIMEOUT)
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == [(123, AVAILABLE, 0)]
