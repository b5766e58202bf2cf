"""The HTTP/REST API, as tensorflow_model_server's --rest_api_port serves it.

Routes, status mapping and bodies follow model_servers/http_server.cc,
http_rest_api_handler.cc and http_rest_api_util.cc:

- GET  /v1/models/NAME[/versions/N|/labels/L]            model status
- GET  /v1/models/NAME[/versions/N|/labels/L]/metadata   signature metadata
- POST /v1/models/NAME[/versions/N|/labels/L]:predict|:classify|:regress
- the Prometheus page at the MonitoringConfig's path, when enabled.

Errors are {"error": "..."} with TF Serving's HTTP status for the canonical
code; a path outside /v1/ gets libevent's HTML 404. Each connection has its
own thread (idle keep-alive connections cost nothing else); the request work
itself runs on a pool of --rest_api_num_threads and is abandoned with 504
after --rest_api_timeout_in_ms, as a TensorFlow session run would be.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import logging
import os
import re
import socket
import socketserver
import threading
import time
import urllib.parse
import zlib

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    regression_pb2,
)

from serving import json_tensor, metrics
from serving.config_protos import ConfigFileError, MonitoringConfig, parse_text_file
from serving.errors import ServingError, invalid_argument

log = logging.getLogger("serving")

# Request bodies above this many bytes (after gzip decoding) are refused;
# it is also TF Serving's cap on a gzip-decoded body (ZLib::kMaxUncompressedBytes).
MAX_BODY_BYTES = 100 * 1024 * 1024
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
_IDLE_CONNECTION_TIMEOUT_S = 120

_PREDICTION_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_API_RE = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_CORS_ORIGIN_RE = re.compile(r"https?://")

# http_server.cc ToHTTPStatusCode.
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_JSON_HEADERS = [("Content-Type", "application/json")]
_CORS_HEADERS = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST, GET"),
    ("Access-Control-Allow-Headers", "Content-Type"),
]


class RestStartError(RuntimeError):
    """The REST server could not start (port in use, bad monitoring config)."""


def load_monitoring_config(path: str | None):
    """Parse a MonitoringConfig text proto (an empty config without a path)."""
    if not path:
        return MonitoringConfig()
    try:
        return parse_text_file(path, MonitoringConfig, "--monitoring_config_file")
    except ConfigFileError as err:
        raise RestStartError(str(err)) from None


class _Reply:
    """A response: HTTP status, headers, body, and what the metrics record."""

    __slots__ = ("status", "headers", "body", "code", "model", "method", "signature")

    def __init__(self, status=200, headers=(), body=b"", code=grpc.StatusCode.OK):
        self.status = status
        self.headers = list(headers)
        self.body = body
        self.code = code
        self.model = ""
        self.method = ""
        self.signature = ""


def _libevent_error(status: int, reason: str) -> _Reply:
    # evhttp_send_error's body for requests nobody handles.
    body = (
        f"<HTML><HEAD>\n<TITLE>{status} {reason}</TITLE>\n</HEAD><BODY>\n"
        f"<H1>{reason}</H1>\n</BODY></HTML>\n"
    ).encode()
    return _Reply(status, [("Content-Type", "text/html; charset=ISO-8859-1")], body)


def _ordered(message, value):
    """MessageToDict output re-keyed in declaration order, maps sorted.

    protobuf's C++ JSON printer walks fields in declaration order; Python's
    puts unset fields last. Map keys are sorted (C++ uses hash order).
    """
    if not isinstance(value, dict):
        return value
    out = {}
    for field in message.DESCRIPTOR.fields:
        key = field.json_name if field.json_name in value else field.name
        if key not in value:
            continue
        item = value[key]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            container = getattr(message, field.name)
            out[key] = {
                k: (_ordered(container[_map_key(field, k)], item[k]) if value_field.message_type else item[k])
                for k in sorted(item)
            }
        elif field.message_type is not None and field.is_repeated:
            out[key] = [_ordered(m, v) for m, v in zip(getattr(message, field.name), item)]
        elif field.message_type is not None:
            out[key] = _ordered(getattr(message, field.name), item)
        else:
            out[key] = item
    return out


def _map_key(field, text: str):
    key_type = field.message_type.fields_by_name["key"].type
    return text if key_type == field.TYPE_STRING else int(text)


def _message_json(message, preserve_names: bool = False) -> str:
    """protobuf's C++ JsonPrinter with add_whitespace: 1-space indent, trailing newline."""
    as_dict = json_format.MessageToDict(
        message, preserving_proto_field_name=preserve_names, always_print_fields_with_no_presence=True
    )
    return json.dumps(_ordered(message, as_dict), indent=1, ensure_ascii=False) + "\n"


class RestApi:
    """The REST handler proper, independent of the HTTP transport."""

    def __init__(self, core, timeout_ms: int, num_threads: int, cors: bool):
        self.core = core
        self.timeout_s = timeout_ms / 1000 if timeout_ms > 0 else None
        self.cors = cors
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, num_threads), thread_name_prefix="httprestserver"
        )

    def handle(self, method: str, path: str, headers, body: bytes) -> _Reply:
        """Answer one request on a /v1/ path (RestApiRequestDispatcher)."""
        start = time.perf_counter()
        if method == "OPTIONS":
            if _CORS_ORIGIN_RE.search(headers.get("Origin", "")):
                reply = _Reply()
            else:
                reply = _Reply(code=grpc.StatusCode.FAILED_PRECONDITION)
                reply.status = _HTTP_STATUS[reply.code]
        else:
            reply = self._process(method, path, body)
        if self.cors:
            reply.headers.extend(_CORS_HEADERS)
        metrics.record_request(
            reply.model, reply.signature, reply.method, reply.code.name,
            time.perf_counter() - start, entrypoint="REST",
        )
        return reply

    def _process(self, method: str, path: str, body: bytes) -> _Reply:
        reply = _Reply(headers=_JSON_HEADERS)
        try:
            work = self._route(method, path, body, reply)
            try:
                future = self.pool.submit(work)
            except RuntimeError:  # the pool is closed: a keep-alive request after stop()
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "The server is shutting down") from None
            try:
                reply.body = future.result(timeout=self.timeout_s)
            except concurrent.futures.TimeoutError:
                # The model call cannot be interrupted; its answer is dropped.
                raise ServingError(
                    grpc.StatusCode.DEADLINE_EXCEEDED, "Timed out waiting for notification"
                ) from None
        except ServingError as err:
            reply.code = err.code
            reply.body = json_tensor.error_response(err.message)
        except Exception as err:  # a bug must still answer, never drop the connection
            log.exception("REST request %s %s failed", method, path)
            reply.code = grpc.StatusCode.INTERNAL
            reply.body = json_tensor.error_response(f"{type(err).__name__}: {err}")
        reply.status = _HTTP_STATUS.get(reply.code, 500)
        return reply

    def _route(self, method: str, path: str, body: bytes, reply: _Reply):
        """Parse the URL (ParseModelInfo) and return the work to run for it."""
        malformed = invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = _PREDICTION_RE.fullmatch(path)
            if match:
                name, version, label, verb = match.groups()
                reply.method = verb
        elif method == "GET":
            match = _STATUS_RE.fullmatch(path)
            if match:
                name, version, label, subresource = match.groups()
        else:
            match = None
        if not match:
            raise malformed
        name = urllib.parse.unquote(name or "")
        reply.model = name
        if version is not None:
            try:
                version = int(version)
                if not -(2**63) <= version < 2**63:
                    raise ValueError
            except ValueError:
                raise invalid_argument(f"Failed to convert version: {version} to numeric.") from None
        if label is not None:
            label = urllib.parse.unquote(label)
        if version is not None and label is not None:
            raise invalid_argument(
                f"Both model version ({version}) and model version label ({label}) cannot be supplied."
            )
        spec = model_pb2.ModelSpec(name=name)
        if version is not None:
            spec.version.value = version
        if label is not None:
            spec.version_label = label
        if method == "POST":
            # The URL pattern ignores case but the verb comparison does not
            # (":PREDICT" is a malformed request), as in TF Serving.
            runner = {"predict": self._predict, "classify": self._classify, "regress": self._regress}.get(verb)
            if runner is None:
                raise malformed
            return lambda: runner(spec, body, reply)
        if not name:
            raise invalid_argument("Missing model name in request.")
        if subresource == "metadata":
            return lambda: self._metadata(spec)
        return lambda: self._status(spec)

    def _predict(self, spec, body: bytes, reply: _Reply) -> bytes:
        doc = json_tensor.parse_json(body)
        signature = json_tensor.signature_name(doc)
        reply.signature = signature
        # Held for the whole request, so an unload waits for it (as a ServableHandle).
        with self.core.acquire(spec) as servable:
            sig_key = signature or "serving_default"
            signature_def = servable.signature_defs.get(sig_key)
            if signature_def is None:
                raise invalid_argument(f'Serving signature name: "{sig_key}" not found in signature def')
            dtypes = {alias: info.dtype for alias, info in signature_def.inputs.items()}
            inputs, fmt = json_tensor.predict_inputs(doc, dtypes, signature)
            outputs = servable.run(signature, inputs)
        return json_tensor.predict_response({k: np.asarray(v) for k, v in outputs.items()}, fmt)

    def _examples_request(self, request, spec, body: bytes, reply: _Reply):
        request.model_spec.CopyFrom(spec)
        doc = json_tensor.parse_json(body)
        json_tensor.fill_input(doc, request)
        reply.signature = request.model_spec.signature_name
        return request

    def _classify(self, spec, body: bytes, reply: _Reply) -> bytes:
        request = self._examples_request(classification_pb2.ClassificationRequest(), spec, body, reply)
        return json_tensor.classification_response(self.core.classify(request).result)

    def _regress(self, spec, body: bytes, reply: _Reply) -> bytes:
        request = self._examples_request(regression_pb2.RegressionRequest(), spec, body, reply)
        return json_tensor.regression_response(self.core.regress(request).result)

    def _status(self, spec) -> bytes:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        return _message_json(self.core.get_model_status(request)).encode()

    def _metadata(self, spec) -> bytes:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=["signature_def"]
        )
        response = self.core.get_model_metadata(request)
        if "signature_def" not in response.metadata:
            raise ServingError(
                grpc.StatusCode.INTERNAL,
                "Failed to find 'signature_def' key in the GetModelMetadataResponse metadata map.",
            )
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(signature_defs):
            raise ServingError(grpc.StatusCode.INTERNAL, "Failed to unpack 'Any' object to 'SignatureDefMap'.")
        # TF Serving prints the two parts separately and glues them together.
        spec_json = _message_json(response.model_spec, preserve_names=True)
        sigs_json = _message_json(signature_defs, preserve_names=True)
        return (
            '{\n"model_spec":' + spec_json + ",\n"
            '"metadata": {"signature_def": ' + sigs_json + "}\n}\n"
        ).encode()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_CONNECTION_TIMEOUT_S
    # TCP_NODELAY: headers and body go out in two writes, and with Nagle the
    # body waited for the client's delayed ACK (~40 ms per keep-alive request).
    disable_nagle_algorithm = True
    server: "_HTTPServer"

    def log_message(self, format, *args):  # per-request logging is off, as in TF Serving
        pass

    def send_response(self, code, message=None):
        # evhttp sends no Server header; keep Date like it does.
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def handle_one_request(self):
        # A client vanishing mid-request is its business, not a server error.
        try:
            super().handle_one_request()
        except (ConnectionError, socket.timeout):
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        """The request body (gzip decoded); None after answering 413 or 400."""
        limit = self.server.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    self._send(_libevent_error(400, "Bad Request"))
                    return None
                if size == 0:
                    while self.rfile.readline(65537).strip():
                        pass  # trailers
                    break
                total += size
                if total > limit:
                    self._too_large()
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
            body = b"".join(chunks)
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._send(_libevent_error(400, "Bad Request"))
                return None
            if length < 0:
                self._send(_libevent_error(400, "Bad Request"))
                return None
            if length > limit:
                self._too_large()
                return None
            body = self.rfile.read(length) if length else b""
        if "gzip" in self.headers.get("Content-Encoding", ""):
            body = self._gunzip(body, limit)
        return body

    @staticmethod
    def _gunzip(body: bytes, limit: int) -> bytes:
        # Like net_http: a body that fails to decode (or decodes past the cap)
        # reads as empty, and the JSON parser reports an empty document.
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = inflater.decompress(body, limit + 1)
            return b"" if len(out) > limit else out
        except zlib.error:
            return b""

    def _too_large(self) -> None:
        self.close_connection = True  # the unread body cannot be skipped safely
        message = f"Request body exceeds the limit of {self.server.max_body_bytes} bytes"
        reply = _Reply(413, _JSON_HEADERS, json_tensor.error_response(message))
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        for key, value in reply.headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection or self.server.stopping:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _dispatch(self) -> None:
        server = self.server
        with server.tracker:
            body = self._read_body()
            if body is None:
                return
            path = self.path
            route = urllib.parse.urlsplit(path).path
            if server.prometheus_path is not None and route == server.prometheus_path:
                self._send(self._prometheus(path))
            elif _API_RE.fullmatch(path):
                self._send(server.api.handle(self.command, path, self.headers, body))
            else:
                self._send(_libevent_error(404, "Not Found"))

    def _prometheus(self, path: str) -> _Reply:
        headers = [("Content-Type", "text/plain")]
        if path != self.server.prometheus_path:
            text = f"Unexpected path: {path}. Should be {self.server.prometheus_path}"
            return _Reply(400, headers, text.encode())
        return _Reply(200, headers, metrics.render().encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


class _InFlight:
    """Counts requests being handled, so a stop can wait for them."""

    def __init__(self):
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self):
        with self._idle:
            self._count += 1

    def __exit__(self, *exc):
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


# While stopping, how long the REST server waits for more connections after
# taking some before it closes its listening socket.
_BACKLOG_QUIET_S = 0.05


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, family, api: RestApi, prometheus_path, max_body_bytes):
        self.address_family = family
        self.api = api
        self.prometheus_path = prometheus_path
        self.max_body_bytes = max_body_bytes
        self.tracker = _InFlight()
        self.stopping = False
        super().__init__(address, _Handler)

    def take_backlog(self) -> int:
        """Take the connections the kernel has already accepted for us (closing the
        listening socket would reset them, cutting their requests off unanswered);
        how many there were."""
        self.socket.setblocking(False)
        taken = 0
        while True:
            try:
                request, address = self.get_request()
            except OSError:  # BlockingIOError: none left
                return taken
            self.process_request(request, address)
            taken += 1

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            # "::" with IPV6_V6ONLY off takes IPv4 too, as evhttp's bind does.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.socket.getsockname()[1]


class RestServer:
    """A running (once started) REST endpoint; see create_http_server."""

    def __init__(self, httpd: _HTTPServer, api: RestApi):
        self._httpd = httpd
        self._api = api
        self._thread: threading.Thread | None = None
        self.port = httpd.server_port

    def start(self) -> None:
        """Serve in a background thread (the caller logs "Exporting HTTP/REST API at:...")."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
            name="rest-accept", daemon=True,
        )
        self._thread.start()

    def stop(self, grace_s: float = 10.0) -> bool:
        """Stop accepting, let in-flight requests finish (up to `grace_s`).

        Returns False when some request was still running at the deadline.
        """
        httpd = self._httpd
        httpd.stopping = True
        deadline = time.monotonic() + grace_s
        if self._thread is not None:
            httpd.shutdown()
            self._thread.join()
            # Clients refused with "Connection: close" often reconnect at once:
            # answer those too (503) until none arrive for a moment, so that few
            # are left to be reset when the listening socket closes.
            while httpd.take_backlog() and time.monotonic() < deadline:
                time.sleep(_BACKLOG_QUIET_S)
        httpd.server_close()
        drained = httpd.tracker.wait_idle(max(0.0, deadline - time.monotonic()))
        self._api.close()
        return drained


def _option(options, *names, default):
    for name in names:
        value = getattr(options, name, None)
        if value is not None:
            return value
    return default


def create_http_server(core, port: int, options=None, host: str | None = None) -> RestServer:
    """Bind the REST API of `core` on `port` (0: any free port); call .start() next.

    `options` is any object with tensorflow_model_server's flag names as
    attributes (missing ones take the real binary's defaults):
    rest_api_num_threads, rest_api_timeout_in_ms,
    rest_api_enable_cors_support, monitoring_config_file; plus
    rest_api_max_body_bytes (no real-binary equivalent). `host`: listen
    only on this address (None: every interface, as the binary). Raises
    RestStartError when the port is taken or the monitoring config is bad.
    """
    num_threads = int(_option(options, "rest_api_num_threads", default=0)) or 4 * (os.cpu_count() or 1)
    timeout_ms = int(_option(options, "rest_api_timeout_in_ms", default=30000))
    cors = bool(_option(options, "rest_api_enable_cors_support", "enable_cors_support", default=False))
    max_body = int(_option(options, "rest_api_max_body_bytes", default=MAX_BODY_BYTES))
    monitoring = load_monitoring_config(_option(options, "monitoring_config_file", default=""))
    prometheus_path = None
    if monitoring.prometheus_config.enable:
        prometheus_path = monitoring.prometheus_config.path or DEFAULT_PROMETHEUS_PATH

    api = RestApi(core, timeout_ms, num_threads, cors)
    errors = []
    # Every interface, as the binary listens; or only `host` when one is given.
    binds = (((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")) if host is None
             else ((socket.AF_INET6 if ":" in host else socket.AF_INET, host),))
    for family, address in binds:
        try:
            httpd = _HTTPServer((address, port), family, api, prometheus_path, max_body)
            return RestServer(httpd, api)
        except OSError as err:
            errors.append(err)
            if err.errno == getattr(socket, "EADDRINUSE", 98):
                break
    api.close()
    reason = errors[-1].strerror or str(errors[-1])
    raise RestStartError(f"Failed to start HTTP Server at localhost:{port}: {reason}")
