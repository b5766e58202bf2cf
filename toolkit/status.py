"""TF Serving's ModelService.GetModelStatus, read the same way by the launcher, the runners and promote."""

from __future__ import annotations


def model_versions(channel, model: str, version: int | None = None, timeout: float = 5.0) -> list[tuple[int, str, str]]:
    """(version, state name, error message) of each version of `model`, by GetModelStatus on `channel`.

    Raises grpc.RpcError as the server answered (NOT_FOUND for an unknown model).
    """
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=timeout)
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    return [(s.version, state_name(s.state), s.status.error_message) for s in response.model_version_status]
