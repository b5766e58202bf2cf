"""What a check feeds: a `Feed` is a named group of calls, `Inputs` every feed of one check.

numpy only (no TensorFlow): the device checker (toolkit.edge) builds them from golden files.
`toolkit.parity.inputs` builds them from held-out data, signatures and users' files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from toolkit.parity.runners.base import feed_rows


@dataclass
class Feed:
    """Calls that belong together, e.g. "heldout" or "on the decision boundary"."""

    name: str
    calls: list[dict]
    #: True when the calls may be split further into smaller batches
    batched: bool = True
    #: False for rows deliberately outside the data (quantized variants are reported, not judged, on them)
    in_distribution: bool = True
    #: inputs that carry rows (dynamic first dimension); empty: each call is one sample
    row_inputs: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        if not self.row_inputs:
            return len(self.calls)
        return sum(feed_rows(call, self.row_inputs) or 0 for call in self.calls)


@dataclass
class Inputs:
    """All feeds of one check plus where they came from."""

    source: str
    feeds: list[Feed]
    seed: int | None = None
    notes: list[str] = field(default_factory=list)
    #: (inputs, outputs) of every call as a server answered it when it was logged, else None
    logged: list[tuple[dict, dict]] | None = None
    #: the log file, or the common prefix of the log files, `logged` came from
    logged_from: str = ""

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.feeds)

    def sha256(self) -> str:
        """A digest of every array fed, so a report names exactly what was run."""
        digest = hashlib.sha256()
        for feed in self.feeds:
            digest.update(feed.name.encode())
            for call in feed.calls:
                for name in sorted(call):
                    value = np.ascontiguousarray(call[name])
                    digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
                    digest.update(value.tobytes() if value.dtype.kind != "O" else repr(value.tolist()).encode())
        return digest.hexdigest()

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "seed": self.seed,
            "rows": self.rows,
            "sha256": self.sha256(),
            "feeds": [
                {"name": f.name, "rows": f.rows, "calls": len(f.calls), "in_distribution": f.in_distribution}
                for f in self.feeds
            ],
            "notes": self.notes,
        }
