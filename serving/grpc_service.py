"""gRPC servicers for PredictionService and ModelService over a ServerCore.

Each call maps ServingError to its status code and message (context.abort),
records the request in serving.metrics, and logs nothing on success.
"""

import logging
import time

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import drain, metrics
from serving.core import ServerCore
from serving.errors import ServingError

log = logging.getLogger("serving")


def _call(core_method, api: str, model_of=lambda r: r.model_spec.name,
          signature_of=lambda r: r.model_spec.signature_name):
    """A servicer method: run core_method(request), map errors, record metrics."""

    def handler(self, request, context):
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if drain.refusing():
                raise ServingError(grpc.StatusCode.UNAVAILABLE, drain.SHUTTING_DOWN)
            return core_method(self.core, request)
        except ServingError as exc:
            code = exc.code
            context.abort(exc.code, exc.message)
        except Exception as exc:  # a bug must still answer the client, not hang it
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", api)
            context.abort(code, f"{type(exc).__name__}: {exc}")
        finally:
            metrics.record_request(model_of(request), signature_of(request), api, code.name,
                                   time.perf_counter() - started)

    handler.__name__ = api
    return handler


def _first_task_model(request) -> str:
    return request.tasks[0].model_spec.name if request.tasks else ""


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService."""

    def __init__(self, core: ServerCore):
        self.core = core

    Predict = _call(ServerCore.predict, "Predict")
    Classify = _call(ServerCore.classify, "Classify")
    Regress = _call(ServerCore.regress, "Regress")
    MultiInference = _call(ServerCore.multi_inference, "MultiInference", _first_task_model,
                           lambda r: "")
    GetModelMetadata = _call(ServerCore.get_model_metadata, "GetModelMetadata")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService."""

    def __init__(self, core: ServerCore):
        self.core = core

    GetModelStatus = _call(ServerCore.get_model_status, "GetModelStatus")
    HandleReloadConfigRequest = _call(ServerCore.handle_reload_config_request,
                                      "HandleReloadConfigRequest", lambda r: "", lambda r: "")


def add_services(server: grpc.Server, core: ServerCore) -> None:
    """Register both TF Serving services on a grpc.Server."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(core), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
