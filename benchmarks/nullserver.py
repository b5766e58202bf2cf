"""The ceiling for gRPC Predict: a PredictionService that does no work.

    python -m benchmarks.nullserver --response FILE [tensorflow_model_server flags...]

Built by `serving.server.grpc_server` from the same flags as our server (same
grpc.aio server, thread pool and channel options), it answers every Predict with the bytes in
FILE — a real response of our server, so the reply has the same size. Requests
are not parsed and the reply is not re-serialized: each costs a few
microseconds in protobuf's C code, so this ceiling is, if anything, a little
high. It logs the same `Running gRPC ModelServer at` line as our server once it
listens, then serves until SIGTERM.
"""

import argparse
import signal
import sys
import threading

import grpc

from serving import flags
from serving.server import grpc_server

SERVICE = "tensorflow.serving.PredictionService"


def null_server(response: bytes, options):
    """A started server (serving.grpc_loop.LoopServer) whose Predict returns `response`, on 127.0.0.1:options.port."""
    server = grpc_server(options)

    async def predict(request, context):  # on the event loop, as our small Predicts are
        return response

    handler = grpc.unary_unary_rpc_method_handler(predict)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Predict": handler}),))
    server.add_insecure_port(f"127.0.0.1:{options.port}")
    server.start()
    return server


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nullserver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--response", required=True, help="file holding a serialized PredictResponse")
    args, server_flags = parser.parse_known_args(argv)
    with open(args.response, "rb") as handle:
        response = handle.read()
    try:
        options = flags.parse(server_flags)
    except flags.FlagError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    server = null_server(response, options)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"Running gRPC ModelServer at 127.0.0.1:{options.port} ...", flush=True)
    stop.wait()
    server.stop(1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
