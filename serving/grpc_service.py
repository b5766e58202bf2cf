"""gRPC servicers for PredictionService and ModelService over a ServerCore.

Each call maps ServingError to its status code and message (context.abort),
records the request in serving.metrics, and logs nothing on success.

Every method but Predict is a plain function, which the aio server runs on
the --grpc_max_threads pool. Predict is a coroutine: a small request (the
common batch-1 call, a few dozen microseconds of work) is served right on the
event loop, which saves the hand-off to a worker thread (see
serving.grpc_loop); a large one, or any when batching is on (its scheduler
blocks the caller until the batch runs), goes to the pool like the others so
it cannot hold up the loop.
"""

import asyncio
import logging
import time

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass
from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

from serving import drain, metrics
from serving.core import ServerCore
from serving.errors import ServingError

log = logging.getLogger("serving")

# Predict requests up to this size (serialized bytes) run on the event loop.
# A 4 000-value float request takes ~100 µs end to end; above that a worker
# thread's hand-off costs less than stalling every other call on the loop.
INLINE_PREDICT_MAX_BYTES = 16 * 1024


# A request whose bytes do not parse: grpcio's thread-pool server answered it
# INTERNAL, as gRPC C++ (and so tensorflow_model_server) does; grpc.aio would
# say UNKNOWN, so the deserializers hand this marker to the handler instead.
_UNPARSEABLE = object()
_UNPARSEABLE_STATUS = (grpc.StatusCode.INTERNAL, "Exception deserializing request!")


def _lenient(parse):
    def deserialize(raw: bytes):
        try:
            return parse(raw)
        except DecodeError:
            return _UNPARSEABLE

    return deserialize


def _answer(core_method, core: ServerCore, request, api: str, model_of, signature_of,
            refuse: bool):
    """Run core_method(core, request): (response, None) or (None, (code, message)),
    with the request recorded in the metrics."""
    if request is _UNPARSEABLE:
        return None, _UNPARSEABLE_STATUS
    started = time.perf_counter()
    code = grpc.StatusCode.OK
    try:
        if refuse:
            raise ServingError(grpc.StatusCode.UNAVAILABLE, drain.SHUTTING_DOWN)
        return core_method(core, request), None
    except ServingError as exc:
        code = exc.code
        return None, (exc.code, exc.message)
    except Exception as exc:  # a bug must still answer the client, not hang it
        code = grpc.StatusCode.INTERNAL
        log.exception("%s failed", api)
        return None, (code, f"{type(exc).__name__}: {exc}")
    finally:
        metrics.record_request(model_of(request), signature_of(request), api, code.name,
                               time.perf_counter() - started)


def _model(request) -> str:
    return request.model_spec.name


def _signature(request) -> str:
    return request.model_spec.signature_name


def _call(core_method, api: str, model_of=_model, signature_of=_signature):
    """A servicer method run on a pool thread: core_method(request), errors mapped."""

    def handler(self, request, context):
        response, error = _answer(core_method, self.core, request, api, model_of, signature_of,
                                  drain.refusing())
        if error:
            context.abort(*error)
        return response

    handler.__name__ = api
    return handler


def _first_task_model(request) -> str:
    return request.tasks[0].model_spec.name if request.tasks else ""


class PredictionService:
    """tensorflow.serving.PredictionService."""

    def __init__(self, core: ServerCore, pool: drain.DrainingExecutor,
                 loop: asyncio.AbstractEventLoop, inline_predict: bool):
        self.core = core
        self._pool = pool
        self._loop = loop
        self._inline_predict = inline_predict

    async def Predict(self, request, context):
        if request is _UNPARSEABLE or (self._inline_predict
                                       and request.ByteSize() <= INLINE_PREDICT_MAX_BYTES):
            response, error = _answer(ServerCore.predict, self.core, request, "Predict", _model,
                                      _signature, self._pool.refuse_inline())
            if error:
                await context.abort(*error)
            return response
        response, error = await self._loop.run_in_executor(self._pool, self._predict_on_thread,
                                                           request)
        if error:
            await context.abort(*error)
        return response

    def _predict_on_thread(self, request):
        return _answer(ServerCore.predict, self.core, request, "Predict", _model, _signature,
                       drain.refusing())

    Classify = _call(ServerCore.classify, "Classify")
    Regress = _call(ServerCore.regress, "Regress")
    MultiInference = _call(ServerCore.multi_inference, "MultiInference", _first_task_model,
                           lambda r: "")
    GetModelMetadata = _call(ServerCore.get_model_metadata, "GetModelMetadata")


class ModelService:
    """tensorflow.serving.ModelService."""

    def __init__(self, core: ServerCore):
        self.core = core

    GetModelStatus = _call(ServerCore.get_model_status, "GetModelStatus")
    HandleReloadConfigRequest = _call(ServerCore.handle_reload_config_request,
                                      "HandleReloadConfigRequest", lambda r: "", lambda r: "")


def _add_service(server, servicer, service) -> None:
    """Register every method of `service` (a ServiceDescriptor) on `servicer`."""
    handlers = {}
    for method in service.methods:
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_lenient(GetMessageClass(method.input_type).FromString),
            response_serializer=GetMessageClass(method.output_type).SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name,
                                                                          handlers),))


def add_services(server, core: ServerCore, pool: drain.DrainingExecutor,
                 loop: asyncio.AbstractEventLoop, inline_predict: bool) -> None:
    """Register both TF Serving services on a serving.grpc_loop.LoopServer;
    `inline_predict`: serve small Predicts on its event loop `loop`."""
    _add_service(server, PredictionService(core, pool, loop, inline_predict),
                 prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"])
    _add_service(server, ModelService(core),
                 model_service_pb2.DESCRIPTOR.services_by_name["ModelService"])
