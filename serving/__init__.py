"""A TensorFlow-Serving-compatible model server (`python -m serving`).

Independent of tfkit's training code: it serves any SavedModel (or
`model.tflite` with --prefer_tflite_model) laid out as TF Serving expects.
"""

__version__ = "0.1.0"

# Not a flag: tensorflow_model_server's command line stays exactly the binary's.
# When set (tfkit's launchers set 127.0.0.1), both APIs listen on this address
# instead of on every interface as the binary does.
LISTEN_HOST_ENV = "TFKIT_SERVING_HOST"
# Not a flag either: seconds the server keeps serving after SIGTERM, its health
# service answering NOT_SERVING, before it refuses new requests (see
# serving.server.ModelServer.drain). tfkit's launchers set 0: no load balancer
# routes to a local server.
DRAIN_GRACE_ENV = "TFKIT_SERVING_DRAIN_GRACE_SECONDS"
