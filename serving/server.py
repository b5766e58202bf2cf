"""`python -m serving`: tensorflow_model_server's start-up, serving loop and shutdown.

Mirrors model_servers/server.cc: check the flags, build the model config
(one model from --model_name/--model_base_path or a --model_config_file),
load every model before listening (a model that cannot load fails the start
with the binary's message and exit code 255), then serve gRPC (and REST with
--rest_api_port) until SIGTERM/SIGINT, which drain (`ModelServer.drain`) and
exit 0. The binary has no SIGTERM handler at all: it dies at once.
"""

import logging
import math
import os
import signal
import sys
import threading
import time
from concurrent import futures

from serving import DRAIN_GRACE_ENV, LISTEN_HOST_ENV, flags
from serving.drain import Drain
from serving.grpc_loop import LoopServer

log = logging.getLogger("serving")

# After SIGTERM: how long everything is still served (so that load balancers
# stop routing here; DRAIN_GRACE_ENV overrides it), then how long the requests
# taken by then get to finish.
DRAIN_GRACE_S = 5.0
DRAIN_TIMEOUT_S = 10.0


class StartError(Exception):
    """Start-up failed; the message is the absl-style status (`CODE: text`)."""


class _Formatter(logging.Formatter):
    """TF's log line layout: `2026-01-01 12:00:00.123456: I serving/server.py:42] msg`."""

    def format(self, record):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        micros = int((record.created % 1) * 1e6)
        where = f"serving/{os.path.basename(record.pathname)}:{record.lineno}"
        return f"{stamp}.{micros:06d}: {record.levelname[0]} {where}] {record.getMessage()}"


def setup_logging() -> None:
    """One stderr handler with TF's line layout."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def _status(code: str, message: str) -> StartError:
    return StartError(f"{code}: {message}")


def _read_text_proto(path: str, message):
    from google.protobuf import text_format

    try:
        with open(path) as handle:
            return text_format.Parse(handle.read(), message)
    except OSError as exc:
        raise _status("NOT_FOUND", f"{path}; {exc.strerror or exc}") from None
    except text_format.ParseError as exc:
        # protobuf's own complaint, worded as the C++ parser logs it
        where = f"{exc.GetLine()}:{exc.GetColumn()}: " if exc.GetLine() else ""
        detail = str(exc).split(" : ", 1)[-1]
        log.error("Error parsing text-format %s: %s%s", message.DESCRIPTOR.full_name, where, detail)
        raise _status("INVALID_ARGUMENT", f"Invalid protobuf file: '{path}'") from None


def check_options(options) -> None:
    """The flag combinations server.cc rejects, with its messages."""
    if options.port == 0 and not options.grpc_socket_path:
        raise _status(
            "INVALID_ARGUMENT",
            "At least one of server_options.grpc_port or server_options.grpc_socket_path must be set.",
        )
    if options.use_alts_credentials and options.ssl_config_file:
        raise _status("INVALID_ARGUMENT", "Either use_alts_credentials must be false or ssl_config_file must be empty.")
    if not options.model_base_path and not options.model_config_file:
        raise _status(
            "INVALID_ARGUMENT", "Both server_options.model_base_path and server_options.model_config_file are empty!"
        )
    if not options.enable_batching and options.batching_parameters_file:
        raise _status(
            "INVALID_ARGUMENT",
            "server_options.batching_parameters_file is set without setting server_options.enable_batching to true.",
        )
    if (
        options.tensorflow_intra_op_parallelism > 0
        and options.tensorflow_inter_op_parallelism > 0
        and options.tensorflow_session_parallelism > 0
    ):
        raise _status(
            "INVALID_ARGUMENT",
            "Either configure server_options.tensorflow_session_parallelism "
            "or (server_options.tensorflow_intra_op_parallelism, "
            "server_options.tensorflow_inter_op_parallelism) separately. "
            "You cannot configure all.",
        )
    if options.platform_config_file:
        raise _status(
            "UNIMPLEMENTED",
            "--platform_config_file is not supported by this server; it serves the TensorFlow platform only.",
        )
    if options.use_alts_credentials:
        raise _status("UNIMPLEMENTED", "--use_alts_credentials is not supported by this server.")


def drain_grace_seconds() -> float:
    """The grace period after SIGTERM: DRAIN_GRACE_ENV, else DRAIN_GRACE_S."""
    text = os.environ.get(DRAIN_GRACE_ENV, "")
    if not text:
        return DRAIN_GRACE_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        raise _status("INVALID_ARGUMENT", f"{DRAIN_GRACE_ENV} must be a number of seconds >= 0, got {text!r}")
    return seconds


def model_server_config(options):
    """The ModelServerConfig the flags describe."""
    # Only the config protos here, not TensorFlow: a bad file fails fast.
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    if options.model_config_file:
        return _read_text_proto(options.model_config_file, config)
    log.info(
        "Building single TensorFlow model file config:  model_name: %s model_base_path: %s",
        options.model_name,
        options.model_base_path,
    )
    model = config.model_config_list.config.add()
    model.name, model.base_path = options.model_name, options.model_base_path
    model.model_platform = "tensorflow"
    return config


def _session_config(options):
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto()
    if options.tensorflow_session_config_file:
        config = _read_text_proto(options.tensorflow_session_config_file, config)
    if options.tensorflow_intra_op_parallelism > 0 or options.tensorflow_inter_op_parallelism > 0:
        config.intra_op_parallelism_threads = options.tensorflow_intra_op_parallelism
        config.inter_op_parallelism_threads = options.tensorflow_inter_op_parallelism
    elif options.tensorflow_session_parallelism > 0:
        config.intra_op_parallelism_threads = options.tensorflow_session_parallelism
        config.inter_op_parallelism_threads = options.tensorflow_session_parallelism
    elif not options.tensorflow_session_config_file:
        # Unconfigured: run ops on the calling request thread (negative = inline).
        # The gRPC/REST thread pools already give the concurrency; handing each
        # op to the inter-op pool cost ~190 us of a ~250 us batch-1 Predict.
        config.inter_op_parallelism_threads = -1
    return config


def build_core(options):
    """A ServerCore whose loader honours the model-loading flags."""
    from serving import metrics
    from serving.core import CoreOptions, ServerCore
    from serving.manager import ManagerOptions
    from serving.servable import load_servable
    from serving.warmup import run_warmup

    tags = [t for t in options.saved_model_tags.split(",") if t]
    session_config = _session_config(options)
    batcher = _batcher(options)

    def loader(name, version, path):
        servable = load_servable(
            name,
            version,
            path,
            tags=tags,
            prefer_tflite=options.prefer_tflite_model,
            num_tflite_interpreters=max(1, options.num_tflite_pools),
            session_config=session_config,
        )
        try:
            if options.enable_model_warmup:
                run_warmup(
                    servable, options.num_request_iterations_for_warmup, options.enable_signature_method_name_check
                )
        except Exception:
            servable.unload()
            raise
        servable.batcher = batcher
        servable.method_name_check = options.enable_signature_method_name_check
        return servable

    retry_s = options.load_retry_interval_micros / 1e6
    core_options = CoreOptions(
        manager=ManagerOptions(
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_s=max(0.0, retry_s),
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
        ),
        allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
        enable_serialization_as_tensor_content=options.enable_serialization_as_tensor_content,
        enable_signature_method_name_check=options.enable_signature_method_name_check,
        saved_model_tags=tuple(tags),
    )
    return ServerCore(loader, core_options, on_load=metrics.record_load)


def _batcher(options):
    if not options.enable_batching:
        return None
    from serving.batching import BatchScheduler
    from serving.config_protos import BatchingParameters
    from serving.errors import ServingError

    params = BatchingParameters()
    if options.batching_parameters_file:
        _read_text_proto(options.batching_parameters_file, params)
    else:
        params.thread_pool_name.value = "model_server_batch_threads"  # server.cc's default
    try:
        return BatchScheduler(params)
    except ServingError as exc:  # values the scheduler cannot work with
        raise _status(exc.code.name, exc.message) from None


def grpc_pool(options) -> futures.ThreadPoolExecutor:
    """The --grpc_max_threads worker pool for grpc_server."""
    return futures.ThreadPoolExecutor(max_workers=max(1, options.grpc_max_threads), thread_name_prefix="grpc")


def grpc_server(options, pool: futures.ThreadPoolExecutor | None = None) -> LoopServer:
    """A gRPC server (grpc.aio, on its own loop thread) with the flags' thread
    pool (`pool`, else a new grpc_pool) and channel arguments, no services or
    ports yet (the benchmark's null server is built by the same function)."""
    try:
        channel_args = flags.grpc_channel_arguments(options.grpc_channel_arguments)
    except flags.FlagError as exc:
        raise _status("INVALID_ARGUMENT", str(exc)) from None
    max_size = 2**31 - 1
    server_options = [
        ("grpc.max_receive_message_length", max_size),
        ("grpc.max_send_message_length", max_size),
        ("grpc.so_reuseport", 0),
    ] + channel_args
    return LoopServer(pool or grpc_pool(options), server_options)


class ModelServer:
    """The running server: core, gRPC (and REST) endpoints, pollers."""

    def __init__(self, options):
        self.options = options
        self.core = None
        self.grpc_server = None
        self._drain = Drain()
        self.http_server = None
        self.health = None
        self.drain_grace_s = DRAIN_GRACE_S
        self._stop = threading.Event()
        self._grace_over = threading.Event()
        self._config_poller: threading.Thread | None = None

    def start(self) -> None:
        """BuildAndStart: load models, then listen. StartError on failure."""
        from serving.errors import ServingError

        options = self.options
        check_options(options)
        self.drain_grace_s = drain_grace_seconds()
        config = model_server_config(options)
        self.core = build_core(options)
        try:
            self.core.reload_config(config)
        except ServingError as exc:
            raise _status(exc.code.name, exc.message) from None
        self.core.manager.start_polling()
        if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
            self._config_poller = threading.Thread(target=self._poll_config, name="config-poll", daemon=True)
            self._config_poller.start()
        self._start_grpc()
        if options.rest_api_port:
            self._start_rest()

    def _poll_config(self) -> None:
        from serving import metrics

        while not self._stop.wait(self.options.model_config_file_poll_wait_seconds):
            self._reload_config_file()
            metrics.record_poll("config_file")

    def _reload_config_file(self) -> None:
        """One pass of the config poller: re-read the file and apply it; errors are logged."""
        from serving.errors import ServingError

        try:
            config = model_server_config(self.options)
        except StartError as exc:
            log.error("Failed to read ModelServerConfig file: %s", exc)
            return
        try:
            self.core.reload_config(config)
        except ServingError as exc:
            log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", exc.message)

    def _start_grpc(self) -> None:
        from serving import grpc_service, metrics

        options = self.options
        pool = grpc_pool(options)
        metrics.watch_grpc_calls_in_flight(self._drain.in_flight)
        server = self.grpc_server = grpc_server(options, pool)
        grpc_service.add_services(server, self.core, pool, server.loop, self._drain)
        if options.enable_grpc_healthcheck_service:
            self._add_health(server)
        if options.enable_profiler:
            from serving.profiler import add_profiler_service

            add_profiler_service(server, own_ports=(options.port, options.rest_api_port))
        credentials = None
        if options.ssl_config_file:
            from serving.tls import server_credentials

            try:
                credentials = server_credentials(options.ssl_config_file)
            except ValueError as exc:  # unreadable or malformed --ssl_config_file
                raise _status("INVALID_ARGUMENT", str(exc)) from None
        addresses = []
        host = os.environ.get(LISTEN_HOST_ENV) or "0.0.0.0"
        if options.port:
            addresses.append(f"[{host}]:{options.port}" if ":" in host else f"{host}:{options.port}")
        if options.grpc_socket_path:
            addresses.append(f"unix:{options.grpc_socket_path}")
        for address in addresses:
            try:
                if credentials is None:
                    server.add_insecure_port(address)
                else:
                    server.add_secure_port(address, credentials)
            except RuntimeError as exc:
                raise _status(
                    "INVALID_ARGUMENT", f"Failed to BuildAndStart gRPC server: cannot listen on {address} ({exc})"
                ) from None
        server.start()
        if options.port:
            log.info("Running gRPC ModelServer at %s:%d ...", host, options.port)
        if options.grpc_socket_path:
            log.info("Running gRPC ModelServer at UNIX socket %s ...", options.grpc_socket_path)

    def _add_health(self, server) -> None:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc

        self.health = health.HealthServicer()
        for service in ("", "ModelService", "PredictionService"):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)

    def _start_rest(self) -> None:
        options = self.options
        if options.rest_api_port == options.port:
            log.error(
                "server_options.http_port cannot be same as grpc_port. Please use a different "
                "port for HTTP/REST API. Skipped exporting HTTP/REST API."
            )
            return
        from serving import rest_api as rest

        if options.monitoring_config_file:
            # A bad monitoring config fails the start, as in the binary (not just REST).
            from serving.config_protos import MonitoringConfig

            _read_text_proto(options.monitoring_config_file, MonitoringConfig())
        try:
            self.http_server = rest.create_http_server(
                self.core, options.rest_api_port, options, host=os.environ.get(LISTEN_HOST_ENV) or None
            )
            self.http_server.start()
        except rest.RestStartError as exc:
            self.http_server = None
            log.error("Failed to start HTTP Server at localhost:%d: %s", options.rest_api_port, exc)
            return
        log.info("Exporting HTTP/REST API at:localhost:%d ...", options.rest_api_port)

    def wait(self) -> None:
        """Block until stop() is requested (by a signal)."""
        while not self._stop.is_set():
            signal.pause()  # returns after each signal handler ran

    def request_stop(self, *_signal_args) -> None:
        """Ask the serving loop to end; asked again, cut the drain's grace period short (signal-handler safe)."""
        if self._stop.is_set():
            self._grace_over.set()
        self._stop.set()

    def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """SIGTERM's stop, which loses nothing the server received before it.

        At once the health service answers NOT_SERVING and HTTP responses close
        their connections, so that load balancers and clients move elsewhere;
        everything is still served for the grace period (`drain_grace_s`). Then
        gRPC calls taken from now on are refused (UNAVAILABLE) and the HTTP
        server stops accepting, while every call and request taken before,
        including connections waiting in the listen backlog, is answered within
        `timeout`. gRPC is left running: the caller is to exit the process now,
        which closes its connections (see serving.drain for why).
        """
        self._stop.set()
        if self.health is not None:
            self.health.enter_graceful_shutdown()
        http_in_flight = self.http_server.begin_drain() if self.http_server is not None else 0
        # The counts prove a drain test's premise: requests were in flight at SIGTERM.
        log.info(
            "Draining: serving for %gs more before refusing new requests (%d gRPC calls and %d HTTP "
            "requests in flight)",
            self.drain_grace_s,
            self._drain.in_flight(),
            http_in_flight,
        )
        self._grace_over.wait(self.drain_grace_s)
        deadline = time.monotonic() + timeout
        in_flight = self._drain.begin()
        log.info("Shutting down: draining requests for up to %gs (%d gRPC calls in flight)", timeout, in_flight)
        if self.http_server is not None:
            self.http_server.stop(timeout)
        if not self._drain.wait_answered(max(0.0, deadline - time.monotonic())):
            log.warning(
                "Drain timeout of %gs over: exiting with %d gRPC calls unanswered", timeout, self._drain.in_flight()
            )
        if self.core is not None:
            self.core.stop()
        log.info("Server stopped")

    def close(self) -> None:
        """Stop whatever a failed or abandoned start() got running."""
        self._stop.set()
        if self.http_server is not None:
            self.http_server.stop(0)
        if self.grpc_server is not None:
            self.grpc_server.stop(0)
        if self.core is not None:
            self.core.stop()


def _print_version() -> None:
    from importlib import metadata

    def version_of(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    print(f"TensorFlow ModelServer: {version_of('tensorflow-serving-api')}")
    print(f"TensorFlow Library: {version_of('tensorflow')}")


def main(argv: list) -> int:
    """Run the server with tensorflow_model_server's arguments; the exit code."""
    options = flags.parse_or_exit(argv)
    if options.version:
        _print_version()
        return 0
    setup_logging()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    server = ModelServer(options)
    # SIGTERM/SIGINT during start-up abandon it; once serving they drain.
    starting = True

    def on_signal(signum, _frame):
        server.request_stop()
        if starting:
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start()
    except StartError as exc:
        print(f"Failed to start server. Error: {exc}", flush=True)
        server.close()
        return 255
    except SystemExit:
        server.close()
        raise
    starting = False
    server.wait()
    server.drain()
    # Exit without stopping gRPC, whose shutdown would cancel the calls still
    # arriving (serving.drain); the drain has answered everything taken.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
