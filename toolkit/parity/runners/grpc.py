"""TF Serving's Predict API over gRPC, against any TF Serving address."""

from __future__ import annotations

import grpc

from toolkit.errors import InputError
from toolkit.parity.runners.base import Signature
from toolkit.parity.runners.remote import RemoteRunner, raise_not_ready


class GrpcRunner(RemoteRunner):
    """Predict over gRPC at `address` (HOST:PORT) for model `model_name`.

    Without `version` the server's default (latest) version answers, and
    `served_version` records which one did, so a stale replica is named.
    """

    kind = "grpc"

    def __init__(
        self,
        address: str,
        model_name: str,
        signature_name: str = "serving_default",
        timeout: float = 30.0,
        max_batch: int | None = None,
        name: str | None = None,
        version: int | None = None,
    ):
        super().__init__(name or f"grpc@{address}", address, model_name, signature_name, timeout, max_batch)
        self.version = version
        self._channel = None
        self._stub = None
        self._model_stub = None

    def _connect(self) -> None:
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        # Raise the client's receive limit to the send limit we chunk for.
        options = [
            ("grpc.max_receive_message_length", self.message_limit),
            ("grpc.max_send_message_length", self.message_limit),
        ]
        self._channel = grpc.insecure_channel(self.address, options=options)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.timeout)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise_not_ready(self.address, self.timeout)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _set_model_spec(self, spec):
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version

    def _model_status(self) -> tuple[bool, str]:
        from toolkit.status import model_versions

        try:
            states = model_versions(self._channel, self.model_name, self.version, timeout=self.timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                self.model_not_found(f"NOT_FOUND: {exc.details()}")
            return False, f"{exc.code().name}: {exc.details()}"
        if any(state == "AVAILABLE" for _, state, _ in states):
            return True, ""
        return False, "; ".join(f"version {v} {state}" + (f" ({msg})" if msg else "") for v, state, msg in states)

    def _fetch_signature(self) -> Signature:
        from tensorflow_serving.apis import get_model_metadata_pb2

        from toolkit.parity.runners.protos import signature_from_def

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._set_model_spec(request.model_spec)
        response = self._call(self._stub.GetModelMetadata, request)
        defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(defs)
        if self.signature_name not in defs.signature_def:
            raise InputError(
                f"model {self.model_name!r} at {self.address} has no signature {self.signature_name!r} "
                f"(it has: {', '.join(sorted(defs.signature_def))})"
            )
        self.served_version = response.model_spec.version.value or None
        return signature_from_def(defs.signature_def[self.signature_name])

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise_not_ready(self.address, self.timeout, f"{exc.code().name}: {exc.details()}")
            raise InputError(f"{self.name} rejected the request: {exc.code().name}: {exc.details()}") from None

    def _infer(self, feed: dict) -> dict:
        from tensorflow_serving.apis import predict_pb2

        from toolkit.parity.runners.protos import from_tensor_proto, to_tensor_proto

        request = predict_pb2.PredictRequest()
        self._set_model_spec(request.model_spec)
        request.model_spec.signature_name = self.signature_name
        for name, value in feed.items():
            request.inputs[name].CopyFrom(to_tensor_proto(value))
        response = self._call(self._stub.Predict, request)
        self.served_version = response.model_spec.version.value or self.served_version
        return {name: from_tensor_proto(proto) for name, proto in response.outputs.items()}

    def _stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = self._model_stub = None
