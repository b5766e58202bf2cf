"""Version policies as serving_config.md and the file-system source define
them, on the two-version test model (123 and 124): which versions
GetModelStatus reports, which one a request without a version gets, and
NOT_FOUND for versions the policy does not serve."""

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from conformance_helpers import RPC_TIMEOUT

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.fixture(scope="module")
def stubs(handler, channel):
    return (
        model_service_pb2_grpc.ModelServiceStub(channel(handler.grpc_address)),
        prediction_service_pb2_grpc.PredictionServiceStub(channel(handler.grpc_address)),
    )


def served_versions(stub, model):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    return sorted((s.version, s.state) for s in stub.GetModelStatus(request, RPC_TIMEOUT).model_version_status)


def predict_version(stub, model, version=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    return stub.Predict(request, RPC_TIMEOUT).model_spec.version.value


@pytest.mark.parametrize(
    "model,versions",
    [
        ("latest", [124]),
        ("latest_two", [123, 124]),
        ("all_versions", [123, 124]),
        ("saved_model_half_plus_two_2_versions", [123]),  # specific { versions: 123 }
    ],
)
def test_policy_decides_the_versions_served(stubs, model, versions):
    models, predictions = stubs
    assert served_versions(models, model) == [(v, AVAILABLE) for v in versions]
    assert predict_version(predictions, model) == max(versions)
    for version in versions:
        assert predict_version(predictions, model, version) == version


def test_version_outside_the_policy_is_not_found(stubs):
    with pytest.raises(grpc.RpcError) as info:
        predict_version(stubs[1], "latest", 123)
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(latest, 123)",
    )
