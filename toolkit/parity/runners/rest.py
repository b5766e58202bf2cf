"""TF Serving's REST API (`/v1/models/NAME:predict`), columnar JSON format."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np

from toolkit.errors import InputError
from toolkit.parity.runners.base import Signature, feed_rows
from toolkit.parity.runners.remote import RemoteRunner, raise_not_ready


class RestRunner(RemoteRunner):
    """Predict over REST at `url` (http://HOST:PORT) for model `model_name`."""

    kind = "rest"
    # JSON spells a float32 in up to ~16 characters plus a separator.
    wire_factor = 5.0
    message_limit = 32 * 1024 * 1024

    def __init__(
        self,
        url: str,
        model_name: str,
        signature_name: str = "serving_default",
        timeout: float = 30.0,
        max_batch: int | None = None,
        name: str | None = None,
    ):
        url = url.rstrip("/")
        if "://" not in url:
            url = "http://" + url
        super().__init__(name or f"rest@{url.split('://', 1)[1]}", url, model_name, signature_name, timeout, max_batch)

    def _request(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.address + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", "")
            except ValueError:
                message = ""
            raise _HttpError(exc.code, message or exc.reason) from None
        except (urllib.error.URLError, OSError) as exc:
            raise _Unreachable(str(getattr(exc, "reason", exc))) from None

    def _call(self, path: str, body: dict | None = None) -> dict:
        """`_request` for data calls: an unreachable server is ServerNotReady (exit 3)."""
        try:
            return self._request(path, body)
        except _Unreachable as exc:
            raise_not_ready(self.address, self.timeout, str(exc))

    def _model_status(self) -> tuple[bool, str]:
        try:
            status = self._request(f"/v1/models/{self.model_name}")
        except _HttpError as exc:
            if exc.code == 404:  # TF Serving's REST API maps NOT_FOUND to 404
                self.model_not_found(f"HTTP 404: {exc.message}")
            return False, f"HTTP {exc.code}: {exc.message}"
        except _Unreachable as exc:
            return False, f"nothing answered ({exc})"
        states = status.get("model_version_status", [])
        if any(s.get("state") == "AVAILABLE" for s in states):
            return True, ""
        return False, "; ".join(
            f"version {s.get('version')} {s.get('state')} {s.get('status', {}).get('error_message', '')}".strip()
            for s in states
        )

    def _fetch_signature(self) -> Signature:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        from toolkit.parity.runners.protos import signature_from_def

        try:
            metadata = self._call(f"/v1/models/{self.model_name}/metadata")
        except _HttpError as exc:
            raise InputError(f"{self.name}: metadata request failed: HTTP {exc.code}: {exc.message}") from None
        defs = get_model_metadata_pb2.SignatureDefMap()
        json_format.ParseDict(metadata["metadata"]["signature_def"], defs, ignore_unknown_fields=True)
        if self.signature_name not in defs.signature_def:
            raise InputError(
                f"model {self.model_name!r} at {self.address} has no signature {self.signature_name!r} "
                f"(it has: {', '.join(sorted(defs.signature_def))})"
            )
        version = metadata.get("model_spec", {}).get("version")
        self.served_version = int(version) if version else None
        return signature_from_def(defs.signature_def[self.signature_name])

    def _infer(self, feed: dict) -> dict:
        if feed_rows(feed, self.signature.row_inputs) == 0:
            # JSON's [] cannot carry a [0, D] shape (TF Serving reads it as [0]); zero
            # rows in means zero rows out, shaped by the signature.
            return {
                name: np.zeros((0, *[d or 0 for d in (spec.shape or (None,))[1:]]), spec.dtype)
                for name, spec in self.signature.outputs.items()
            }
        body = {
            "signature_name": self.signature_name,
            "inputs": {name: _to_json(value) for name, value in feed.items()},
        }
        try:
            reply = self._call(f"/v1/models/{self.model_name}:predict", body)
        except _HttpError as exc:
            raise InputError(f"{self.name} rejected the request: HTTP {exc.code}: {exc.message}") from None
        outputs = reply["outputs"]
        if not isinstance(outputs, dict):
            # TF Serving drops the name when the signature has a single output.
            (only,) = self.signature.outputs
            outputs = {only: outputs}
        return {name: _from_json(value, self.signature.outputs[name].dtype) for name, value in outputs.items()}


class _Unreachable(Exception):
    """No HTTP answer at all (refused, timed out, DNS)."""


class _HttpError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _to_json(value: np.ndarray):
    if value.dtype.kind in "SO":
        # Bytes travel base64-encoded, as TF Serving's REST API expects.
        flat = [
            {"b64": base64.b64encode(x if isinstance(x, bytes) else str(x).encode()).decode()} for x in value.ravel()
        ]
        return np.array(flat, dtype=object).reshape(value.shape).tolist()
    return value.tolist()


def _from_json(value, dtype: np.dtype) -> np.ndarray:
    if np.dtype(dtype) == np.dtype(object):
        decode = np.vectorize(
            lambda x: base64.b64decode(x["b64"]) if isinstance(x, dict) else x.encode(), otypes=[object]
        )
        return decode(np.array(value, dtype=object))
    return np.asarray(value, dtype=dtype)
