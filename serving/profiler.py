"""The profiler service on the gRPC port, as tensorflow_model_server's --enable_profiler.

TensorFlow's own profiler server (tf.profiler.experimental.server) runs in this
process on a private loopback port; the model server's gRPC port forwards the
`tensorflow.ProfilerService` methods to it byte for byte, so
`tf.profiler.experimental.client.trace("grpc://HOST:PORT", ...)` works against
the model server address exactly as against the real binary.
"""

import logging
import socket

import grpc

log = logging.getLogger("serving")

SERVICE = "tensorflow.ProfilerService"
METHODS = ("Profile", "Terminate", "Monitor", "StartContinuousProfiling", "StopContinuousProfiling", "GetSnapshot")


def _free_loopback_port(avoid: frozenset) -> int:
    """A free 127.0.0.1 port other than `avoid`: the server's own ports, which it
    binds only after this one is chosen (a free one then is free for anyone)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


class _Forwarder(grpc.GenericRpcHandler):
    """Relays ProfilerService calls to the in-process TensorFlow profiler server."""

    def __init__(self, target: str):
        self._channel = grpc.insecure_channel(target)

    def service(self, handler_call_details):
        method = handler_call_details.method
        if not method.startswith(f"/{SERVICE}/"):
            return None
        upstream = self._channel.unary_unary(method)  # raw bytes both ways

        def relay(request: bytes, context):
            try:
                return upstream(request, timeout=context.time_remaining())
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details() or "")

        return grpc.unary_unary_rpc_method_handler(relay)


def add_profiler_service(server, own_ports=()) -> None:
    """Start TensorFlow's profiler server privately and expose it on `server`;
    `own_ports`: the ports the model server is about to listen on."""
    import tensorflow as tf

    port = _free_loopback_port(frozenset(own_ports))
    tf.profiler.experimental.server.start(port)
    server.add_generic_rpc_handlers((_Forwarder(f"127.0.0.1:{port}"),))
    log.info("Profiler service is enabled")
