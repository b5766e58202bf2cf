"""Malformed gRPC requests and REST bodies, each with the answer it must get.

gRPC cases are raw bytes sent through `channel.unary_unary` with identity
serializers, so a case can be anything: random bytes, a valid request with a
few bytes overwritten or cut off, a request protobuf can parse but the model
cannot accept, or a valid request with unknown fields.
Expectations follow tensorflow_model_server:

- bytes that do not parse as the request message: INTERNAL, the status gRPC
  itself answers (in C++ as in Python) before any server code runs;
- random or mutated bytes that happen to parse: a client-error code
  (INVALID_ARGUMENT, NOT_FOUND for a model that is not configured,
  FAILED_PRECONDITION), or OK with the right answer when the mutation left a
  valid request;
- every malformed tensor, shape, dtype or example: INVALID_ARGUMENT (an
  unknown signature key: FAILED_PRECONDITION, as predict_util.cc answers);
- values that are odd but legal (NaN/Inf, an empty batch, unknown protobuf
  fields): OK, with the answer the model gives.

REST cases are (method, path, body) with the HTTP status TF Serving documents
for them (400 for bad JSON/types/shapes, 404 for an unknown model, 413 for a
body over the limit) or 200 with a correct answer.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from reliability.reference import ModelReference
from reliability.traffic import example, float_tensor, predict_outputs, predict_request

PREDICTION_SERVICE = "/tensorflow.serving.PredictionService/"
MODEL_SERVICE = "/tensorflow.serving.ModelService/"
# method path -> request message class (to tell parseable bytes from garbage).
METHODS = {
    PREDICTION_SERVICE + "Predict": predict_pb2.PredictRequest,
    PREDICTION_SERVICE + "Classify": classification_pb2.ClassificationRequest,
    PREDICTION_SERVICE + "Regress": regression_pb2.RegressionRequest,
    PREDICTION_SERVICE + "GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest,
    MODEL_SERVICE + "GetModelStatus": get_model_status_pb2.GetModelStatusRequest,
}
PREDICT = PREDICTION_SERVICE + "Predict"
CLIENT_ERRORS = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}
)
INVALID = frozenset({grpc.StatusCode.INVALID_ARGUMENT})
CALL_TIMEOUT_S = 10.0
# The REST API's body limit (serving.http_server.MAX_BODY_BYTES, TF Serving's gzip cap).
REST_BODY_LIMIT = 100 * 1024 * 1024


@dataclasses.dataclass
class GrpcCase:
    """One malformed (or legal-but-odd) gRPC request and what it must get."""

    category: str
    method: str
    payload: bytes
    codes: frozenset = INVALID  # allowed error codes
    ok_features: np.ndarray | None = None  # set when OK is a right answer: the features sent


@dataclasses.dataclass
class RestCase:
    """One malformed (or legal-but-odd) REST request and the statuses it may get."""

    category: str
    method: str
    path: str
    body: bytes
    statuses: frozenset
    ok_features: np.ndarray | None = None  # 200 allowed, answer checked against these features
    headers: dict = dataclasses.field(default_factory=dict)
    declared_length: int | None = None  # a Content-Length claim larger than the body sent


def _tensor(dtype, dims, **fields) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **fields)


def _predict_bytes(model: str, tensors: dict, signature: str = "serving_default", output_filter=()) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for alias, tensor in tensors.items():
        request.inputs[alias].CopyFrom(tensor)
    request.output_filter.extend(output_filter)
    return request.SerializeToString()


class GrpcCases:
    """Generators of gRPC fuzz cases for a model with a [None, D] float `features` input."""

    def __init__(self, model: str, num_features: int, feature_names: list[str], seed: int):
        self.model = model
        self.d = num_features
        self.names = feature_names
        self.rng = np.random.default_rng(seed)

    def _rows(self, n: int | None = None) -> np.ndarray:
        n = int(self.rng.integers(1, 5)) if n is None else n
        return self.rng.normal(0, 3, size=(n, self.d)).astype(np.float32)

    def _predict(self, category: str, tensor, codes=INVALID, **kw) -> GrpcCase:
        return GrpcCase(category, PREDICT, _predict_bytes(self.model, {"features": tensor}, **kw), codes)

    def random_bytes(self) -> GrpcCase:
        method = list(METHODS)[int(self.rng.integers(len(METHODS)))]
        payload = self.rng.bytes(int(self.rng.integers(0, 256)))
        try:
            METHODS[method].FromString(payload)
        except Exception:  # protobuf's DecodeError and friends: not a message at all
            return GrpcCase("random bytes (unparseable)", method, payload, frozenset({grpc.StatusCode.INTERNAL}))
        return GrpcCase("random bytes (parseable)", method, payload, CLIENT_ERRORS)

    def mutated(self) -> GrpcCase:
        """A valid Predict request with a few bytes overwritten or the tail cut off."""
        payload = bytearray(predict_request(self.model, self._rows()).SerializeToString())
        if self.rng.integers(4) == 0:
            del payload[int(self.rng.integers(1, len(payload))) :]
        else:
            for _ in range(int(self.rng.integers(1, 4))):
                payload[int(self.rng.integers(len(payload)))] = int(self.rng.integers(256))
        payload = bytes(payload)
        try:
            request = predict_pb2.PredictRequest.FromString(payload)
        except Exception:  # protobuf's DecodeError and friends
            return GrpcCase("mutated request (unparseable)", PREDICT, payload, frozenset({grpc.StatusCode.INTERNAL}))
        return GrpcCase(
            "mutated request (parseable)", PREDICT, payload, CLIENT_ERRORS, ok_features=self._valid_features(request)
        )

    def _valid_features(self, request) -> np.ndarray | None:
        """The [N, D] float32 features of a request the model must answer; None if it must refuse it."""
        tensor = request.inputs.get("features")
        if (
            request.model_spec.name != self.model
            or set(request.inputs) != {"features"}
            or request.model_spec.signature_name not in ("", "serving_default")
            or request.model_spec.HasField("version")
            or request.model_spec.HasField("version_label")
            or request.output_filter
            or tensor.dtype != types_pb2.DT_FLOAT
        ):
            return None
        dims = [d.size for d in tensor.tensor_shape.dim]
        if len(dims) != 2 or dims[1] != self.d or dims[0] < 0 or len(tensor.tensor_content) != 4 * dims[0] * self.d:
            return None
        return np.frombuffer(tensor.tensor_content, dtype="<f4").reshape(dims).astype(np.float32)

    def wrong_dtype(self) -> GrpcCase:
        rows = self._rows()
        n = rows.size
        choices = [
            (types_pb2.DT_INT32, {"int_val": [1] * n}),
            (types_pb2.DT_INT64, {"int64_val": [1] * n}),
            (types_pb2.DT_DOUBLE, {"double_val": rows.ravel().tolist()}),
            (types_pb2.DT_BOOL, {"bool_val": [True] * n}),
            (types_pb2.DT_HALF, {"half_val": [15360] * n}),
            (types_pb2.DT_UINT8, {"int_val": [3] * n}),
            (types_pb2.DT_COMPLEX64, {"scomplex_val": [1.0, 0.0] * n}),
            (types_pb2.DT_RESOURCE, {}),
            (types_pb2.DT_VARIANT, {}),
            (999, {}),
        ]
        dtype, fields = choices[int(self.rng.integers(len(choices)))]
        return self._predict("wrong dtype", _tensor(dtype, rows.shape, **fields))

    def string_for_float(self) -> GrpcCase:
        rows = self._rows()
        values = [str(v).encode() for v in rows.ravel()]
        return self._predict(
            "string tensor for float input", _tensor(types_pb2.DT_STRING, rows.shape, string_val=values)
        )

    def huge_dims(self) -> GrpcCase:
        """Shapes claiming 10^9..10^18 elements (or overflowing int64) with a tiny payload."""
        big = int(10 ** self.rng.uniform(9, 18))
        dims = [[big, self.d], [big], [self.d, big], [2**40, 2**40], [2**62, 4], [big, big]][int(self.rng.integers(6))]
        payload = self.rng.integers(0, 3)
        if payload == 0:
            fields = {"float_val": [1.0]}
        elif payload == 1:
            fields = {"tensor_content": np.ones(self.d, dtype="<f4").tobytes()}
        else:
            fields = {}
        return self._predict("dims claiming billions of elements", _tensor(types_pb2.DT_FLOAT, dims, **fields))

    def negative_dims(self) -> GrpcCase:
        dims = [[-1, self.d], [2, -self.d], [-(2**40)], [3, self.d, -1]][int(self.rng.integers(4))]
        return self._predict("negative dims", _tensor(types_pb2.DT_FLOAT, dims, float_val=[1.0]))

    def content_mismatch(self) -> GrpcCase:
        rows = self._rows()
        content = rows.astype("<f4").tobytes()
        cut = [content[:-1], content[:-4], content + b"\0\0\0\0", content + b"\0", b"\0"][int(self.rng.integers(5))]
        return self._predict(
            "tensor_content length mismatch", _tensor(types_pb2.DT_FLOAT, rows.shape, tensor_content=cut)
        )

    def too_many_values(self) -> GrpcCase:
        rows = self._rows()
        return self._predict(
            "more values than the shape holds",
            _tensor(types_pb2.DT_FLOAT, rows.shape, float_val=rows.ravel().tolist() + [1.0]),
        )

    def wrong_shape(self) -> GrpcCase:
        n = int(self.rng.integers(1, 5))
        dims = [[n, self.d + 1], [n], [n, self.d, 1], [], [n, max(self.d - 1, 0) or self.d + 2]][
            int(self.rng.integers(5))
        ]
        count = int(np.prod(dims)) if dims else 1
        return self._predict(
            "wrong rank or width", _tensor(types_pb2.DT_FLOAT, dims, tensor_content=np.ones(count, "<f4").tobytes())
        )

    def wrong_inputs(self) -> GrpcCase:
        rows = float_tensor(self._rows())
        variants = [{"bogus": rows}, {}, {"features": rows, "extra": rows}]
        tensors = variants[int(self.rng.integers(len(variants)))]
        return GrpcCase("unknown, missing or extra input", PREDICT, _predict_bytes(self.model, tensors))

    def bad_signature_or_filter(self) -> GrpcCase:
        rows = float_tensor(self._rows())
        if self.rng.integers(2):
            # predict_util.cc: an unknown signature key is FAILED_PRECONDITION.
            return GrpcCase(
                "unknown signature",
                PREDICT,
                _predict_bytes(self.model, {"features": rows}, signature="no_such_signature"),
                frozenset({grpc.StatusCode.FAILED_PRECONDITION}),
            )
        return GrpcCase(
            "unknown output_filter",
            PREDICT,
            _predict_bytes(self.model, {"features": rows}, output_filter=["no_such_output"]),
        )

    def bad_examples(self) -> GrpcCase:
        """Classify/Regress with examples the signature cannot parse (or none at all)."""
        method = PREDICTION_SERVICE + ("Classify" if self.rng.integers(2) else "Regress")
        request = METHODS[method]()
        request.model_spec.name = self.model
        kind = int(self.rng.integers(3))
        if kind == 1:  # a feature missing
            request.input.example_list.examples.extend([example([1.0] * (self.d - 1), self.names[1:])])
        elif kind == 2:  # bytes where floats belong
            ex = example([1.0] * self.d, self.names)
            ex.features.feature[self.names[0]].ClearField("float_list")
            ex.features.feature[self.names[0]].bytes_list.value.append(b"not a float")
            request.input.example_list.examples.append(ex)
        return GrpcCase("malformed examples", method, request.SerializeToString())

    # -- legal but odd: OK with the model's answer ------------------------------
    def nan_inf(self) -> GrpcCase:
        rows = self._rows()
        mask = self.rng.random(rows.shape) < 0.5
        rows[mask] = self.rng.choice(np.array([np.nan, np.inf, -np.inf], dtype=np.float32), size=int(mask.sum()))
        return GrpcCase(
            "NaN/Inf values",
            PREDICT,
            predict_request(self.model, rows).SerializeToString(),
            frozenset(),
            ok_features=rows,
        )

    def empty_batch(self) -> GrpcCase:
        rows = np.zeros((0, self.d), dtype=np.float32)
        return GrpcCase(
            "empty batch", PREDICT, predict_request(self.model, rows).SerializeToString(), frozenset(), ok_features=rows
        )

    def unknown_fields(self) -> GrpcCase:
        rows = self._rows()
        # Field numbers no TF Serving message uses: a varint (tag 999) and a
        # length-delimited one (tag 1000), which protobuf keeps as unknown fields.
        extra = bytes([0xB8, 0x3E, 0x2A, 0xC2, 0x3E, 0x03]) + b"abc"
        payload = predict_request(self.model, rows).SerializeToString() + extra
        return GrpcCase("unknown fields", PREDICT, payload, frozenset(), ok_features=rows)

    def generators(self) -> list[Callable[[], GrpcCase]]:
        return [
            self.random_bytes,
            self.mutated,
            self.wrong_dtype,
            self.string_for_float,
            self.huge_dims,
            self.huge_dims,
            self.negative_dims,
            self.content_mismatch,
            self.too_many_values,
            self.wrong_shape,
            self.wrong_inputs,
            self.bad_signature_or_filter,
            self.bad_examples,
            self.nan_inf,
            self.empty_batch,
            self.unknown_fields,
        ]

    def cases(self, count: int) -> Iterator[GrpcCase]:
        """`count` cases, every generator in turn, random within each."""
        generators = self.generators()
        for i in range(count):
            yield generators[i % len(generators)]()


def check_grpc_answer(
    case: GrpcCase, code: grpc.StatusCode, payload: bytes | None, reference: ModelReference
) -> str | None:
    """Why this answer is wrong for the case; None if right."""
    if code == grpc.StatusCode.OK:
        if case.ok_features is None:
            return f"expected {'/'.join(sorted(c.name for c in case.codes))}, got OK"
        response = predict_pb2.PredictResponse.FromString(payload)
        outputs = predict_outputs(response)
        return reference.mismatch(response.model_spec.version.value, case.ok_features, outputs)
    if code not in case.codes:
        wanted = sorted(c.name for c in case.codes) + (["OK"] if case.ok_features is not None else [])
        return f"expected {'/'.join(wanted)}, got {code.name}"
    return None


@dataclasses.dataclass
class FuzzResult:
    """How many cases ran, per category, and the ones answered wrongly."""

    cases: int
    per_category: dict
    failures: list  # "category: why"
    max_latency_s: float

    def summary(self) -> str:
        lines = [
            f"{self.cases} cases, {len(self.failures)} answered wrongly, slowest {self.max_latency_s * 1000:.0f} ms"
        ]
        lines += [f"  {n:5d}  {c}" for c, n in sorted(self.per_category.items())]
        lines += [f"  FAIL {f}" for f in self.failures[:20]]
        return "\n".join(lines)


def run_grpc_fuzz(target: str, model: str, reference: ModelReference, count: int = 1000, seed: int = 0) -> FuzzResult:
    """Send `count` gRPC fuzz cases to `target` and check every answer."""
    cases = GrpcCases(model, reference.num_features, reference.feature_names, seed)
    per_category: dict = {}
    failures = []
    slowest = 0.0
    with grpc.insecure_channel(target) as channel:
        calls = {m: channel.unary_unary(m, request_serializer=None, response_deserializer=None) for m in METHODS}
        for case in cases.cases(count):
            per_category[case.category] = per_category.get(case.category, 0) + 1
            started = time.perf_counter()
            try:
                payload, code = calls[case.method](case.payload, timeout=CALL_TIMEOUT_S), grpc.StatusCode.OK
            except grpc.RpcError as exc:
                payload, code = None, exc.code()
            slowest = max(slowest, time.perf_counter() - started)
            why = check_grpc_answer(case, code, payload, reference)
            if why:
                failures.append(f"{case.category} ({case.method.rsplit('/', 1)[1]}): {why}")
    return FuzzResult(count, per_category, failures, slowest)


# -- REST -----------------------------------------------------------------------
def rest_cases(model: str, num_features: int, seed: int) -> list[RestCase]:
    """Malformed REST requests, a few of each kind, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    predict = f"/v1/models/{model}:predict"
    bad = frozenset({400})
    row = [0.5] * num_features
    cases: list[RestCase] = []

    def add(category, body, statuses=bad, path=predict, method="POST", ok_features=None, **kw):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        cases.append(RestCase(category, method, path, data, statuses, ok_features, **kw))

    for _ in range(20):
        add("invalid JSON: random bytes", rng.bytes(int(rng.integers(1, 200))))
    valid = json.dumps({"instances": [row]}).encode()
    for cut in range(1, len(valid) - 1, max(1, len(valid) // 10)):
        add("invalid JSON: truncated", valid[:cut])
    for text in [
        b"",
        b"   ",
        b"{",
        b"{'instances': [[1, 2]]}",
        b'{"instances": [[1,,2]]}',
        b'{"instances": [NaNx]}',
        b"\xff\xfe{}",
        b"[1, 2]",
        b'"instances"',
        b"null",
        b"42",
    ]:
        add("invalid JSON or not an object", text)
    for depth in (1000, 100_000, 1_000_000):
        add("deep nesting", b'{"instances": ' + b"[" * depth + b"]" * depth + b"}")
        add("deep nesting", b'{"instances": [' + b'{"a":' * depth + b"1" + b"}" * depth + b"]}")
    for literal in ("1e400", "-1e999", "1" + "0" * 400, "123456789012345678901234567890e300"):
        add("huge numbers", ('{"instances": [[' + ", ".join([literal] * num_features) + "]]}").encode())
    for value in [1e30, -3.4e38, 1.7e308]:
        rows = np.full((1, num_features), value, dtype=np.float64)
        with np.errstate(over="ignore"):
            as_float32 = rows.astype(np.float32)
        # Legal JSON numbers: answered for the float32 they round to (maybe inf), or refused.
        add("large but finite numbers", {"instances": rows.tolist()}, frozenset({200, 400}), ok_features=as_float32)
    # Keys TF Serving does not read are ignored, not refused.
    add(
        "unknown top-level key",
        {"instances": [row], "extra": {"deep": [1, 2]}},
        frozenset({200}),
        ok_features=np.array([row], dtype=np.float32),
    )
    wrong_types = [
        {"instances": [["a"] * num_features]},
        {"instances": [[None] * num_features]},
        {"instances": [[True] * num_features]},
        {"instances": [[{"b64": "AAAA"}] * num_features]},
        {"instances": "not a list"},
        {"instances": 5},
        {"instances": {"features": 1}},
        {"inputs": "x"},
        {"instances": [row], "inputs": [row]},
        {"instances": []},
        {"signature_name": 5, "instances": [row]},
        {"signature_name": "nope", "instances": [row]},
        {"instances": [[[0.5]] * num_features]},
        {"instances": [row + [0.5]]},
        {"instances": [row, row[:-1]]},
        {"instances": [{"features": row}, {"wrong": row}]},
        {"no_instances": [row]},
        {},
    ]
    for body in wrong_types:
        add("wrong types or shapes", body)
    add("unknown model", {"instances": [row]}, frozenset({404}), path="/v1/models/no_such_model:predict")
    add("unknown version", {"instances": [row]}, frozenset({404}), path=f"/v1/models/{model}/versions/987654:predict")
    add("path traversal in name", {"instances": [row]}, frozenset({400, 404}), path="/v1/models/..%2F..%2Fetc:predict")
    add("oversized body (declared)", b'{"instances": [[', frozenset({413}), declared_length=REST_BODY_LIMIT + 1)
    add("bad method", b"", frozenset({400, 404, 405}), method="DELETE", path=f"/v1/models/{model}")
    return cases


def _rest_send(url, case: RestCase) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=CALL_TIMEOUT_S)
    try:
        if case.declared_length is not None:
            # Claim a body larger than the limit but send a few bytes: the server
            # must refuse from the header alone, without reading or allocating it.
            conn.putrequest(case.method, case.path)
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(case.declared_length))
            conn.endheaders(case.body)
        else:
            conn.request(
                case.method, case.path, body=case.body, headers={"Content-Type": "application/json", **case.headers}
            )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check_rest_answer(case: RestCase, status: int, body: bytes, reference: ModelReference) -> str | None:
    """Why this REST answer is wrong for the case; None if right."""
    if status not in case.statuses:
        return f"expected HTTP {'/'.join(map(str, sorted(case.statuses)))}, got {status}: {body[:150]!r}"
    if status == 200 and case.ok_features is not None:
        predictions = json.loads(body)["predictions"]
        outputs = {k: np.array([p[k] for p in predictions]) for k in ("probabilities", "logits", "classes")}
        if reference.matching_version(case.ok_features, outputs) is None:
            return f"200 with an answer no version gives: {predictions}"
    elif status >= 400 and status != 413 and case.method == "POST":
        try:
            error = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            return f'HTTP {status} without a JSON {{"error": ...}} body: {body[:150]!r}'
        if not isinstance(error, str) or not error:
            return f"HTTP {status} with an empty error"
    return None


def run_rest_fuzz(url: str, model: str, reference: ModelReference, seed: int = 0) -> FuzzResult:
    """Send every REST fuzz case to `url` and check every answer."""
    per_category: dict = {}
    failures = []
    slowest = 0.0
    cases = rest_cases(model, reference.num_features, seed)
    for case in cases:
        per_category[case.category] = per_category.get(case.category, 0) + 1
        started = time.perf_counter()
        try:
            status, body = _rest_send(url, case)
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{case.category}: connection error {type(exc).__name__}: {exc}")
            continue
        finally:
            slowest = max(slowest, time.perf_counter() - started)
        why = check_rest_answer(case, status, body, reference)
        if why:
            failures.append(f"{case.category}: {why}")
    return FuzzResult(len(cases), per_category, failures, slowest)


__all__ = [
    "GrpcCase",
    "GrpcCases",
    "RestCase",
    "rest_cases",
    "run_grpc_fuzz",
    "run_rest_fuzz",
    "check_grpc_answer",
    "check_rest_answer",
    "FuzzResult",
]
