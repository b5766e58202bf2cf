"""A runtime whose answers were recorded earlier: a golden file, a stored check,
a device's report, or the responses a server logged in production.

It answers a call by looking up the recorded call with the same inputs. A call
the check cut into row chunks (transport limits of another runtime) is
answered row by row, from the recorded calls that held those rows, for
outputs that follow the batch. Inputs it never saw are an `InputError`:
recorded evidence cannot be extrapolated.
"""

from __future__ import annotations

import hashlib

import numpy as np

from toolkit.errors import InputError
from toolkit.parity.runners.base import Runner, Signature, feed_rows


def feed_digest(feed: dict) -> str:
    """A digest of a call's inputs: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(feed):
        value = np.asarray(feed[name])
        kind = "S" if value.dtype.kind in "OSU" else value.dtype.str
        digest.update(f"{name}:{kind}:{value.shape}".encode())
        if value.dtype.kind in "OSU":
            for item in value.ravel().tolist():
                raw = item if isinstance(item, bytes) else str(item).encode()
                digest.update(len(raw).to_bytes(8, "little") + raw)
        else:
            digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


class RecordedRunner(Runner):
    """Answers from `records`, a list of (inputs, outputs) dicts of numpy arrays.

    `kind` says where the answers come from (e.g. "golden", "stored", "device",
    "logged"); `details` is shown in reports (file, hashes, versions, device).
    """

    def __init__(
        self,
        name: str,
        signature: Signature,
        records: list[tuple[dict, dict]],
        kind: str = "recorded",
        details: dict | None = None,
    ):
        super().__init__(name)
        self.kind = kind
        self.details = details or {}
        self._declared = signature
        self._records = records
        self._calls: dict[str, dict] = {}
        self._rows: dict[str, tuple[int, int]] = {}

    def describe(self) -> dict:
        return {**super().describe(), **self.details}

    def _start(self) -> Signature:
        rows = self._declared.row_inputs
        for index, (inputs, outputs) in enumerate(self._records):
            self._calls.setdefault(feed_digest(inputs), outputs)
            count = feed_rows(inputs, rows)
            for row in range(count or 0):
                self._rows.setdefault(feed_digest(_row(inputs, rows, row)), (index, row))
        return self._declared

    def _infer(self, feed: dict) -> dict:
        found = self._calls.get(feed_digest(feed))
        if found is not None:
            return {name: np.array(value, copy=True) for name, value in found.items()}
        return self._infer_rows(feed)

    def _infer_rows(self, feed: dict) -> dict:
        """Assemble a chunk of a recorded call from the recorded rows it holds."""
        rows = self.signature.row_inputs
        count = feed_rows(feed, rows)
        places = [self._rows.get(feed_digest(_row(feed, rows, row))) for row in range(count or 0)]
        if not count or None in places:
            raise InputError(
                f"{self.name} has no recorded answer for this call: its inputs were not among the "
                "recorded ones (feed the recorded inputs, e.g. the golden file's)"
            )
        parts: dict[str, list] = {}
        for index, row in places:
            inputs, outputs = self._records[index]
            total = feed_rows(inputs, rows)
            for name, value in outputs.items():
                value = np.asarray(value)
                if value.ndim == 0 or value.shape[0] != total:
                    raise InputError(
                        f"{self.name}: output {name} does not follow the batch, so a part of a "
                        "recorded call cannot be answered; do not split its calls (--max-batch)"
                    )
                parts.setdefault(name, []).append(value[row : row + 1])
        return {name: np.concatenate(values) for name, values in parts.items()}


def _row(feed: dict, row_inputs, row: int) -> dict:
    """Row `row` of the row inputs, with every other input whole: the key of one recorded row."""
    return {name: value[row : row + 1] if name in row_inputs else value for name, value in feed.items()}
