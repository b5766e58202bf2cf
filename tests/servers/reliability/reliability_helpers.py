"""Names and small gRPC helpers shared by the reliability tests."""

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

from reliability.traffic import predict_outputs, predict_request

# The model name the shared export (tests/conftest.py) and every server here use.
MODEL = "logreg"


def model_status(target: str, name: str = MODEL) -> dict:
    """version -> (state name, error code, error message) from GetModelStatus."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    with grpc.insecure_channel(target) as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    state = get_model_status_pb2.ModelVersionStatus.State.Name
    return {
        s.version: (state(s.state), s.status.error_code, s.status.error_message) for s in response.model_version_status
    }


def predict(target: str, features, name: str = MODEL, version=None):
    """(version that answered, outputs) of a Predict on serving_default."""
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(predict_request(name, features, version), timeout=10)
    return response.model_spec.version.value, predict_outputs(response)
