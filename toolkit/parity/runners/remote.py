"""What the gRPC and REST runners share: waiting for a model to become
AVAILABLE on a TF Serving address, and splitting requests under a size limit."""

from __future__ import annotations

import abc
import time

import numpy as np

from toolkit.errors import ModelNotFound, ServerNotReady
from toolkit.parity.runners.base import Runner, Signature


class RemoteRunner(Runner):
    """A runner answering through a TF Serving endpoint (see `grpc`, `rest`)."""

    #: request/response size this transport allows, in bytes
    message_limit = 4 * 1024 * 1024
    #: bytes one tensor element costs on the wire, for a dtype's itemsize
    wire_factor = 1.0
    # A SignatureDef cannot mark every optional input (a TF1 placeholder_with_default has no entry in
    # its `defaults`): feeds may leave inputs out, and the server says whether it can do without them.
    inputs_optional = True

    def __init__(
        self,
        name: str,
        address: str,
        model_name: str,
        signature_name: str = "serving_default",
        timeout: float = 30.0,
        max_batch: int | None = None,
    ):
        super().__init__(name)
        self.address = address
        self.model_name = model_name
        self.signature_name = signature_name
        self.timeout = timeout
        self.max_batch = max_batch
        #: the model version that answered the last request (None before any)
        self.served_version: int | None = None

    def describe(self) -> dict:
        return {
            **super().describe(),
            "address": self.address,
            "model_name": self.model_name,
            "signature": self.signature_name,
            "served_version": self.served_version,
        }

    def _start(self) -> Signature:
        self._connect()
        self._wait_available()
        return self._fetch_signature()

    def _wait_available(self) -> None:
        """Poll the model's status until a version is AVAILABLE; NOT_FOUND ends the wait at once
        (a server opens its ports only after loading its models, so the model will not appear)."""
        deadline = time.monotonic() + self.timeout
        while True:
            ready, why = self._model_status()
            if ready:
                return
            if time.monotonic() >= deadline:
                raise ServerNotReady(
                    f"model {self.model_name!r} not AVAILABLE at {self.address} within {self.timeout:g}s: {why}"
                )
            time.sleep(0.2)

    def max_rows(self, feed: dict) -> int | None:
        """Rows per request that keep requests and responses under `message_limit`."""
        per_row_in = sum(_row_bytes(v.dtype, v.shape[1:], v) for v in feed.values() if v.ndim)
        per_row_out = sum(
            _row_bytes(s.dtype, s.shape[1:] if s.shape else (), None) for s in self.signature.outputs.values()
        )
        per_row = max(per_row_in, per_row_out, 1) * self.wire_factor
        # Leave 10% for framing, names and the other fields of the message.
        rows = max(1, int(self.message_limit * 0.9 // per_row))
        return min(rows, self.max_batch) if self.max_batch else rows

    def _connect(self) -> None:
        """Open the transport (may be lazy)."""

    @abc.abstractmethod
    def _model_status(self) -> tuple[bool, str]:
        """(True, "") when the model is AVAILABLE, else (False, why not); `model_not_found` on NOT_FOUND."""

    def model_not_found(self, detail: str) -> None:
        """Raise ModelNotFound (exit 3) for the server's NOT_FOUND answer `detail`."""
        raise ModelNotFound(
            f"model {self.model_name!r} not found at {self.address} ({detail}); "
            "pass --model-name with a model the server serves"
        )

    @abc.abstractmethod
    def _fetch_signature(self) -> Signature:
        """The signature as the server reports it in its model metadata."""


def raise_not_ready(address: str, timeout: float, detail: str = "nothing answered") -> None:
    """Raise ServerNotReady naming the address (exit 3)."""
    raise ServerNotReady(f"no TF Serving reachable at {address} within {timeout:g}s ({detail})")


def _row_bytes(dtype: np.dtype, inner_shape, value) -> int:
    elements = int(np.prod([d if d else 1 for d in inner_shape])) if inner_shape else 1
    if np.dtype(dtype).kind in "SUO":
        # Strings: the longest one in the feed, or a guess for outputs.
        longest = max((len(x) for x in value.ravel()), default=1) if value is not None and value.size else 64
        return elements * (longest + 4)
    return elements * np.dtype(dtype).itemsize
