"""gRPC servicers for PredictionService and ModelService over a ServerCore.

Each call maps ServingError to its status code and message (context.abort),
records the request in serving.metrics, and logs nothing on success.

Every method is a coroutine on the aio server's event loop. It first admits
its call to the drain (serving.drain: counted until answered, or refused once
the server is shutting down), then runs the core method on the
--grpc_max_threads pool. Predict is the exception: a small request (the common
batch-1 call, a few dozen microseconds of work) is served right on the event
loop, which saves the hand-off to a worker thread (see serving.grpc_loop);
with batching on, it waits for its batch there without blocking the loop. A
large request goes to the pool like the other methods, so it cannot hold up
the loop.
"""

import asyncio
import logging
import time
from concurrent import futures

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass
from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

from serving import inference, metrics
from serving.batching import Done
from serving.core import ServerCore
from serving.drain import Drain
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


def _model(request) -> str:
    return request.model_spec.name


def _signature(request) -> str:
    return request.model_spec.signature_name


class _Call:
    """One call's outcome: a `with _Call(...) as call:` block sets `call.response`;
    on leaving it, a ServingError (or, for a bug, any Exception) becomes
    `call.error` = (code, message) and the request is recorded in the metrics."""

    __slots__ = ("api", "request", "model_of", "signature_of", "started", "response", "error")

    def __init__(self, api: str, request, model_of=_model, signature_of=_signature):
        self.api = api
        self.request = request
        self.model_of = model_of
        self.signature_of = signature_of
        self.response = None
        self.error = None

    def __enter__(self) -> "_Call":
        self.started = time.perf_counter()
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        code = grpc.StatusCode.OK
        if isinstance(exc, ServingError):
            code = exc.code
            self.error = (exc.code, exc.message)
        elif isinstance(exc, Exception):  # a bug must still answer the client, not hang it
            code = grpc.StatusCode.INTERNAL
            log.error("%s failed", self.api, exc_info=exc)
            self.error = (code, f"{type(exc).__name__}: {exc}")
        elif exc is not None:  # cancellation, interpreter exit: not ours to answer
            return False
        metrics.record_request(
            self.model_of(self.request),
            self.signature_of(self.request),
            self.api,
            code.name,
            time.perf_counter() - self.started,
        )
        return True


def _call(core_method, api: str, model_of=_model, signature_of=_signature):
    """A servicer method: core_method(core, request) on the worker pool, errors mapped."""

    async def handler(self, request, context):
        if request is _UNPARSEABLE:
            await context.abort(*_UNPARSEABLE_STATUS)
        with _Call(api, request, model_of, signature_of) as call:
            self._drain.admit(context)
            call.response = await self._loop.run_in_executor(self._pool, core_method, self.core, request)
        if call.error:
            await context.abort(*call.error)
        return call.response

    handler.__name__ = api
    return handler


def _first_task_model(request) -> str:
    return request.tasks[0].model_spec.name if request.tasks else ""


class _Servicer:
    """What every servicer method needs: the core, the worker pool, the event loop, the drain."""

    def __init__(
        self, core: ServerCore, pool: futures.ThreadPoolExecutor, loop: asyncio.AbstractEventLoop, drain: Drain
    ):
        self.core = core
        self._pool = pool
        self._loop = loop
        self._drain = drain


class PredictionService(_Servicer):
    """tensorflow.serving.PredictionService."""

    async def Predict(self, request, context):
        if request is _UNPARSEABLE:
            await context.abort(*_UNPARSEABLE_STATUS)
        with _Call("Predict", request) as call:
            self._drain.admit(context)
            if request.ByteSize() > INLINE_PREDICT_MAX_BYTES:
                call.response = await self._loop.run_in_executor(self._pool, self.core.predict, request)
            else:
                # ServerCore.predict, except that a batched run is awaited.
                servable = self.core.take(request.model_spec)
                try:
                    run = inference.start_predict(servable, request)
                    if not isinstance(run, Done):
                        await self._batch_done(run)
                    call.response = inference.predict_response(
                        servable, request, run.result(), self.core.options.enable_serialization_as_tensor_content
                    )
                finally:
                    servable.release()
                self.core.log_predict(request, call.response)
        if call.error:
            await context.abort(*call.error)
        return call.response

    async def _batch_done(self, run) -> None:
        """Wait for a batched run; the loop serves other calls meanwhile."""
        ready = self._loop.create_future()
        run.add_done_callback(lambda: self._loop.call_soon_threadsafe(_set_done, ready))
        await ready

    Classify = _call(ServerCore.classify, "Classify")
    Regress = _call(ServerCore.regress, "Regress")
    MultiInference = _call(ServerCore.multi_inference, "MultiInference", _first_task_model, lambda r: "")
    GetModelMetadata = _call(ServerCore.get_model_metadata, "GetModelMetadata")


def _set_done(future: asyncio.Future) -> None:
    if not future.done():  # the call may have been cancelled meanwhile
        future.set_result(None)


class ModelService(_Servicer):
    """tensorflow.serving.ModelService."""

    GetModelStatus = _call(ServerCore.get_model_status, "GetModelStatus")
    HandleReloadConfigRequest = _call(
        ServerCore.handle_reload_config_request, "HandleReloadConfigRequest", lambda r: "", lambda r: ""
    )


def _add_service(server, servicer, service) -> None:
    """Register every method of `service` (a ServiceDescriptor) on `servicer`."""
    handlers = {}
    for method in service.methods:
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_lenient(GetMessageClass(method.input_type).FromString),
            response_serializer=GetMessageClass(method.output_type).SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


def add_services(
    server, core: ServerCore, pool: futures.ThreadPoolExecutor, loop: asyncio.AbstractEventLoop, drain: Drain
) -> None:
    """Register both TF Serving services on a serving.grpc_loop.LoopServer whose
    event loop is `loop` and worker pool `pool`; `drain` counts and refuses their calls."""
    _add_service(
        server,
        PredictionService(core, pool, loop, drain),
        prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
    )
    _add_service(
        server, ModelService(core, pool, loop, drain), model_service_pb2.DESCRIPTOR.services_by_name["ModelService"]
    )
