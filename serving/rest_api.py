"""The HTTP/REST API, as tensorflow_model_server's --rest_api_port serves it.

Routes, status mapping and bodies follow model_servers/http_server.cc (its
request dispatcher) and http_rest_api_handler.cc / http_rest_api_util.cc:

- GET  /v1/models/NAME[/versions/N|/labels/L]            model status
- GET  /v1/models/NAME[/versions/N|/labels/L]/metadata   signature metadata
- POST /v1/models/NAME[/versions/N|/labels/L]:predict|:classify|:regress
- the Prometheus page at the MonitoringConfig's path, when enabled.

Errors are {"error": "..."} with TF Serving's HTTP status for the canonical
code; a path outside /v1/ gets libevent's HTML 404. The request work runs on a
pool of --rest_api_num_threads and is abandoned with 504 after
--rest_api_timeout_in_ms, as a TensorFlow session run would be. Sockets,
connections and draining are serving.http_server's job.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import re
import time
import urllib.parse

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

from serving import drain, http_server, json_tensor, metrics
from serving.config_protos import ConfigFileError, MonitoringConfig, parse_text_file
from serving.errors import ServingError, invalid_argument, unavailable
from serving.http_server import MAX_BODY_BYTES, Reply, libevent_error
from serving.servable import DEFAULT_SIGNATURE

log = logging.getLogger("serving")

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"

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


class _Reply(Reply):
    """A REST API response, plus what the metrics record."""

    __slots__ = ("code", "model", "method", "signature")

    def __init__(self, status=200, headers=(), body=b"", code=grpc.StatusCode.OK):
        super().__init__(status, headers, body)
        self.code = code
        self.model = ""
        self.method = ""
        self.signature = ""


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
            out[key] = [_ordered(m, v) for m, v in zip(getattr(message, field.name), item, strict=True)]
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
    """The REST API as the application of a serving.http_server (an HttpApp)."""

    def __init__(self, core, timeout_ms: int, num_threads: int, cors: bool, prometheus_path: str | None):
        self.core = core
        self.timeout_s = timeout_ms / 1000 if timeout_ms > 0 else None
        self.cors = cors
        self.prometheus_path = prometheus_path
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, num_threads), thread_name_prefix="httprestserver"
        )

    def handle(self, method: str, path: str, headers, body: bytes) -> Reply:
        """Answer one HTTP request: the Prometheus page, the /v1/ API, or libevent's 404."""
        if self.prometheus_path is not None and urllib.parse.urlsplit(path).path == self.prometheus_path:
            return self._prometheus(path)
        if _API_RE.fullmatch(path):
            return self._api_request(method, path, headers, body)
        return libevent_error(404, "Not Found")

    def body_too_large(self, limit: int) -> Reply:
        """The 413 for a body over `limit` bytes, as a JSON error."""
        message = f"Request body exceeds the limit of {limit} bytes"
        return Reply(413, _JSON_HEADERS, json_tensor.error_response(message))

    def _prometheus(self, path: str) -> Reply:
        headers = [("Content-Type", "text/plain")]
        if path != self.prometheus_path:
            text = f"Unexpected path: {path}. Should be {self.prometheus_path}"
            return Reply(400, headers, text.encode())
        return Reply(200, headers, metrics.render().encode())

    def _api_request(self, method: str, path: str, headers, body: bytes) -> _Reply:
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
            reply.model,
            reply.signature,
            reply.method,
            reply.code.name,
            time.perf_counter() - start,
            entrypoint="REST",
        )
        return reply

    def _process(self, method: str, path: str, body: bytes) -> _Reply:
        reply = _Reply(headers=_JSON_HEADERS)
        try:
            work = self._route(method, path, body, reply)
            try:
                future = self.pool.submit(work)
            except RuntimeError:  # the pool is closed: a keep-alive request after stop()
                raise unavailable(drain.SHUTTING_DOWN) from None
            try:
                reply.body = future.result(timeout=self.timeout_s)
            except concurrent.futures.TimeoutError:
                # The model call cannot be interrupted; its answer is dropped.
                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Timed out waiting for notification") from None
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
            sig_key = signature or DEFAULT_SIGNATURE
            if sig_key not in servable.signature_defs:
                raise invalid_argument(f'Serving signature name: "{sig_key}" not found in signature def')
            inputs, fmt = json_tensor.predict_inputs(doc, servable.plan(sig_key).dtypes, signature)
            outputs = servable.run(signature, inputs)
            self.core.log_rest_predict(spec, signature, inputs, outputs, servable.version)
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
        request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec, metadata_field=["signature_def"])
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
        return ('{\n"model_spec":' + spec_json + ',\n"metadata": {"signature_def": ' + sigs_json + "}\n}\n").encode()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _option(options, *names, default):
    for name in names:
        value = getattr(options, name, None)
        if value is not None:
            return value
    return default


def create_http_server(core, port: int, options=None, host: str | None = None) -> http_server.HttpServer:
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

    api = RestApi(core, timeout_ms, num_threads, cors, prometheus_path)
    try:
        return http_server.bind(api, port, host, max_body)
    except OSError as err:
        api.close()
        raise RestStartError(f"Failed to start HTTP Server at localhost:{port}: {err.strerror or err}") from None
