"""One load-generating client: mixed gRPC and REST requests, every answer checked.

Requests are built and answers decoded here with plain protobuf and numpy
(not with the server's own tensor codec), so a codec bug cannot hide itself.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import grpc
import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from reliability.reference import ModelReference

KINDS = ("grpc_predict", "grpc_classify", "grpc_status", "rest_predict")
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
REQUEST_TIMEOUT_S = 30.0
MAX_BATCH = 8
_NUMPY_OF = {types_pb2.DT_FLOAT: np.float32, types_pb2.DT_INT64: np.int64}


@dataclasses.dataclass
class Outcome:
    """One request: its kind, how long it took, what went wrong (None: answered correctly)."""

    kind: str
    latency_s: float
    error: str | None
    version: int | None = None


def float_tensor(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A float32 TensorProto carrying `array` as tensor_content."""
    array = np.ascontiguousarray(array, dtype="<f4")
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape])
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape, tensor_content=array.tobytes())


def decode_tensor(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """float32/int64 TensorProto -> numpy (typed fields or tensor_content)."""
    dtype = _NUMPY_OF.get(proto.dtype)
    if dtype is None:
        raise ValueError(f"unexpected output dtype {types_pb2.DataType.Name(proto.dtype)}")
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        flat = np.frombuffer(proto.tensor_content, dtype=np.dtype(dtype).newbyteorder("<"))
    else:
        flat = np.array(proto.float_val if dtype is np.float32 else proto.int64_val, dtype=dtype)
    return flat.reshape(shape)


def predict_request(name: str, features: np.ndarray, version: int | None = None):
    """A Predict request on serving_default for a [N, D] batch."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["features"].CopyFrom(float_tensor(features))
    return request


def predict_outputs(response) -> dict:
    """PredictResponse -> {output name: ndarray}."""
    return {key: decode_tensor(tensor) for key, tensor in response.outputs.items()}


def example(values, feature_names) -> example_pb2.Example:
    """A tf.Example with one float feature per column, as the classify signature parses."""
    return example_pb2.Example(
        features=feature_pb2.Features(
            feature={
                n: feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[float(v)]))
                for n, v in zip(feature_names, values)
            }
        )
    )


class TrafficClient:
    """One client: its own gRPC channel and HTTP connection, requests of every kind.

    grpc_target: "host:port"; rest_url: "http://host:port" or None (no REST traffic).
    """

    def __init__(self, grpc_target: str, rest_url: str | None, model: str, reference: ModelReference, seed: int):
        self.model = model
        self.reference = reference
        self.rng = np.random.default_rng(seed)
        self.channel = grpc.insecure_channel(grpc_target)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.kinds = KINDS if rest_url else tuple(k for k in KINDS if not k.startswith("rest"))
        self._rest = urlsplit(rest_url) if rest_url else None
        self._http: http.client.HTTPConnection | None = None
        self._calls: dict[str, Callable[[np.ndarray], tuple[str | None, int | None]]] = {
            "grpc_predict": self._grpc_predict,
            "grpc_classify": self._grpc_classify,
            "grpc_status": self._grpc_status,
            "rest_predict": self._rest_predict,
        }

    def close(self) -> None:
        self.channel.close()
        if self._http is not None:
            self._http.close()

    def features(self) -> np.ndarray:
        """A random batch of 1..MAX_BATCH rows, spread well across both classes."""
        batch = int(self.rng.integers(1, MAX_BATCH + 1))
        return self.rng.normal(0.0, 3.0, size=(batch, self.reference.num_features)).astype(np.float32)

    def request(self, kind: str | None = None) -> Outcome:
        """Send one request (of a random kind unless given) and check its answer."""
        kind = kind or self.kinds[int(self.rng.integers(len(self.kinds)))]
        features = self.features()
        start = time.perf_counter()
        try:
            error, version = self._calls[kind](features)
        except grpc.RpcError as exc:
            error, version = f"{exc.code().name}: {exc.details()}", None
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as exc:
            if self._http is not None:  # start the next REST request on a fresh connection
                self._http.close()
                self._http = None
            error, version = f"{type(exc).__name__}: {exc}", None
        return Outcome(kind, time.perf_counter() - start, error, version)

    # -- one method per kind: (error or None, version that answered) ----------
    def _grpc_predict(self, features):
        response = self.predictions.Predict(predict_request(self.model, features), timeout=REQUEST_TIMEOUT_S)
        version = response.model_spec.version.value
        return self.reference.mismatch(version, features, predict_outputs(response)), version

    def _grpc_classify(self, features):
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = "classify"
        names = self.reference.feature_names
        request.input.example_list.examples.extend(example(row, names) for row in features)
        response = self.predictions.Classify(request, timeout=REQUEST_TIMEOUT_S)
        version = response.model_spec.version.value
        rows = response.result.classifications
        if len(rows) != len(features):
            return f"{len(rows)} classifications for {len(features)} examples", version
        labels = [[c.label for c in row.classes] for row in rows]
        if any(row != ["0", "1"] for row in labels):
            return f"class labels {labels}, expected ['0', '1'] per example", version
        p1 = np.array([[row.classes[1].score] for row in rows], dtype=np.float32)
        p0 = np.array([[row.classes[0].score] for row in rows], dtype=np.float32)
        error = self.reference.mismatch(version, features, {"probabilities": p1})
        if error is None and not np.allclose(p0 + p1, 1.0, atol=1e-5):
            error = "class scores do not add up to 1"
        return error, version

    def _grpc_status(self, features):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model
        response = self.models.GetModelStatus(request, timeout=REQUEST_TIMEOUT_S)
        available = [s.version for s in response.model_version_status if s.state == AVAILABLE]
        if not available:
            return "no AVAILABLE version", None
        unknown = set(available) - set(self.reference.versions())
        return (f"unknown version(s) {sorted(unknown)} AVAILABLE" if unknown else None), max(available)

    def _rest_predict(self, features):
        if self._http is None:
            self._http = http.client.HTTPConnection(self._rest.hostname, self._rest.port, timeout=REQUEST_TIMEOUT_S)
        body = json.dumps({"signature_name": "serving_default", "instances": features.tolist()})
        self._http.request(
            "POST", f"/v1/models/{self.model}:predict", body=body, headers={"Content-Type": "application/json"}
        )
        response = self._http.getresponse()
        payload = response.read()
        if response.status != 200:
            return f"HTTP {response.status}: {payload[:200]!r}", None
        predictions = json.loads(payload)["predictions"]
        outputs = {key: np.array([row[key] for row in predictions]) for key in ("probabilities", "logits", "classes")}
        # REST answers do not name their version: the answer must be one known version's.
        version = self.reference.matching_version(features, outputs)
        if version is None:
            return f"REST answer matches no known version: {predictions[:2]}", None
        return None, version
