"""What an exported tfkit logistic-regression version must answer.

The model is `probabilities = sigmoid(features @ w + b)`; knowing `w` and `b`
of every version lets a client check each answer without TensorFlow, and tell
versions apart (differently seeded runs have different weights).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from toolkit.artifacts.layout import version_numbers

# The server computes in float32; numpy here in float64.
RTOL = 1e-5
ATOL = 1e-5
# A logit this close to 0 may round to either class.
BOUNDARY = 1e-4
_VARIABLE = "{}/.ATTRIBUTES/VARIABLE_VALUE"


def read_weights(version_dir: str | Path) -> tuple[np.ndarray, float]:
    """(w [D], b) of a version folder exported by `tfkit export`, read from its variables."""
    from toolkit.tfenv import import_tf

    reader = import_tf().train.load_checkpoint(str(Path(version_dir) / "variables" / "variables"))
    w = reader.get_tensor(_VARIABLE.format("w")).astype(np.float64).reshape(-1)
    b = float(reader.get_tensor(_VARIABLE.format("b")).reshape(-1)[0])
    return w, b


class ModelReference:
    """Weights of every known version of one model; thread-safe."""

    def __init__(self, feature_names: list[str]):
        self.feature_names = list(feature_names)
        self._weights: dict[int, tuple[np.ndarray, float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> ModelReference:
        """Every integer-named version under BASE/NAME."""
        model_dir = Path(model_dir)
        versions = version_numbers(model_dir)
        if not versions:
            raise ValueError(f"{model_dir}: no version folders")
        weights = {v: read_weights(model_dir / str(v)) for v in versions}
        num_features = next(iter(weights.values()))[0].shape[0]
        ref = cls([f"x{i}" for i in range(num_features)])
        manifest = model_dir / str(versions[-1]) / "manifest.json"
        if manifest.is_file():
            ref.feature_names = json.loads(manifest.read_text())["feature_names"]
        for version, (w, b) in weights.items():
            ref.add(version, w, b)
        return ref

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def add(self, version: int, w, b: float) -> None:
        """Register a version's weights (before it is published, so no answer is unknown)."""
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        if w.shape[0] != self.num_features:
            raise ValueError(f"version {version}: {w.shape[0]} weights for {self.num_features} features")
        with self._lock:
            self._weights[version] = (w, float(b))

    def versions(self) -> list[int]:
        with self._lock:
            return sorted(self._weights)

    def expected(self, version: int, features: np.ndarray) -> dict[str, np.ndarray]:
        """probabilities/logits [N,1] float64 and classes [N,1] of a version."""
        with self._lock:
            w, b = self._weights[version]
        # inf/NaN inputs give inf/NaN logits, as in the model; no warnings for them.
        with np.errstate(over="ignore", invalid="ignore"):
            logits = features.astype(np.float64) @ w[:, None] + b
            probabilities = 1.0 / (1.0 + np.exp(-logits))
        return {"logits": logits, "probabilities": probabilities, "classes": (probabilities > 0.5).astype(np.int64)}

    def mismatch(self, version: int, features: np.ndarray, outputs: dict) -> str | None:
        """Why `outputs` (any subset of the three) are not what `version` answers; None if they are."""
        if version not in self.versions():
            return f"answered by unknown version {version}"
        want = self.expected(version, features)
        for key, got in outputs.items():
            got = np.asarray(got)
            if got.shape != want[key].shape:
                return f"{key}: shape {list(got.shape)}, expected {list(want[key].shape)}"
            if key == "classes":
                ambiguous = np.abs(want["logits"]) < BOUNDARY
                bad = (got != want[key]) & ~ambiguous
            else:
                bad = ~np.isclose(got, want[key], rtol=RTOL, atol=ATOL, equal_nan=True)
            if bad.any():
                i = int(np.argwhere(bad)[0][0])
                return f"{key}[{i}] = {got.reshape(len(got), -1)[i].tolist()}, version {version} gives {want[key][i].tolist()}"
        return None

    def matching_version(self, features: np.ndarray, outputs: dict) -> int | None:
        """The known version whose answer `outputs` is (for APIs that do not name it)."""
        for version in reversed(self.versions()):
            if self.mismatch(version, features, outputs) is None:
                return version
        return None
