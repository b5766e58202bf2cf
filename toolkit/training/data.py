"""In-memory data: the tutorial's two Gaussians, its stratified split, and NPZ files.

Everything here is numpy only (no TensorFlow). A user's NPZ is read whole
(`--data file.npz`, and a run folder's heldout.npz/train.npz); CSV and TFRecord
data is streamed (`toolkit.training.stream`). Every problem with a user's file
raises `InputError` with one line naming the file, the row/column and what is wrong.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import InputError

# The tutorial's generator: class 0 around [0, 4], class 1 around [4, 0].
TUTORIAL_MEANS = ((0.0, 4.0), (4.0, 0.0))
TUTORIAL_COV = ((1.0, 0.4), (0.4, 1.0))
TUTORIAL_FEATURE_NAMES = ("x0", "x1")


@dataclass(frozen=True)
class Dataset:
    """Features float32 [N, D], labels float32 [N] (0.0/1.0), one name per column."""

    features: np.ndarray
    labels: np.ndarray
    feature_names: tuple[str, ...]
    source: str

    @property
    def num_features(self) -> int:
        return self.features.shape[1]

    def __len__(self) -> int:
        return self.features.shape[0]

    def digest(self) -> str:
        """sha256 over feature names, features and labels: identifies the data in manifests."""
        h = hashlib.sha256()
        h.update("\0".join(self.feature_names).encode())
        h.update(np.ascontiguousarray(self.features, dtype="<f4").tobytes())
        h.update(np.ascontiguousarray(self.labels, dtype="<f4").tobytes())
        return h.hexdigest()

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.features[index], self.labels[index], self.feature_names, self.source)


def synthetic(num_per_class: int = 2000, seed: int = 0) -> Dataset:
    """The tutorial's data: two 2-D Gaussians, `num_per_class` samples each, seeded."""
    if num_per_class < 1:
        raise InputError(f"--num-per-class must be at least 1, got {num_per_class}")
    rng = np.random.default_rng(seed)
    parts = [rng.multivariate_normal(mean, TUTORIAL_COV, size=num_per_class) for mean in TUTORIAL_MEANS]
    features = np.vstack(parts).astype(np.float32)
    labels = np.concatenate([np.zeros(num_per_class), np.ones(num_per_class)]).astype(np.float32)
    return Dataset(features, labels, TUTORIAL_FEATURE_NAMES, f"synthetic(num_per_class={num_per_class}, seed={seed})")


def split(data: Dataset, test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Hold out `test_fraction` of each class (stratified, shuffled with `seed`): (train, held-out).

    Stratifying keeps both classes on both sides, so held-out metrics and
    parity checks always see each class.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"--test-fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    rng = np.random.default_rng(seed)
    held = []
    for label in (0.0, 1.0):
        members = np.flatnonzero(data.labels == label)
        n_test = min(max(int(round(len(members) * test_fraction)), 1), len(members) - 1)
        if n_test < 1:
            raise InputError(
                f"{data.source}: class {label:g} has {len(members)} sample(s); "
                "need at least 2 per class to hold some out"
            )
        held.append(rng.permutation(members)[:n_test])
    held_out = np.sort(np.concatenate(held))
    kept = np.setdiff1d(np.arange(len(data)), held_out)
    return data.subset(kept), data.subset(held_out)


def save_npz(path: str | Path, data: Dataset) -> None:
    """Write `data` as an .npz that `load` reads back: features, labels, feature_names."""
    np.savez(path, features=data.features, labels=data.labels, feature_names=np.array(data.feature_names))


def load(path: str | Path) -> Dataset:
    """Load an NPZ (`features` [N, D], `labels` [N], optionally `feature_names` [D]), checking every value."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an .npz file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    raise InputError(f"{path}: unsupported data format {suffix or '(no extension)'!r}; use .npz")


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [key for key in ("features", "labels") if key not in arrays]
    if missing:
        raise InputError(
            f"{path}: missing array(s) {', '.join(missing)} (found: {', '.join(sorted(arrays)) or 'none'})"
        )
    features, labels = arrays["features"], arrays["labels"]
    if features.size == 0 or labels.size == 0:
        raise InputError(f"{path}: file is empty (no samples in 'features'/'labels')")
    if features.ndim != 2:
        raise InputError(f"{path}: 'features' must be 2-D [samples, features], got shape {features.shape}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise InputError(f"{path}: 'labels' must be 1-D [samples], got shape {labels.shape}")
    if len(labels) != len(features):
        raise InputError(f"{path}: {len(features)} feature rows but {len(labels)} labels")
    for key, array in (("features", features), ("labels", labels)):
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise InputError(f"{path}: {key!r} has non-numeric dtype {array.dtype}")
    if "feature_names" in arrays:
        feature_names = tuple(str(name) for name in arrays["feature_names"].reshape(-1))
        if len(feature_names) != features.shape[1] or len(set(feature_names)) != len(feature_names):
            raise InputError(
                f"{path}: 'feature_names' must hold {features.shape[1]} distinct names, got {list(feature_names)}"
            )
    else:
        feature_names = tuple(f"x{i}" for i in range(features.shape[1]))
    features = features.astype(np.float64)
    labels = labels.astype(np.float64)
    _validate(path, features, labels, feature_names, "labels", lambda r: f"row {r}")
    return Dataset(features.astype(np.float32), labels.astype(np.float32), feature_names, str(path))


def _validate(path, features, labels, feature_names, label_name, where) -> None:
    """Reject NaN/Inf features (also values that overflow float32), labels not 0/1 and a single class."""
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(features) | ~np.isfinite(features.astype(np.float32))
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        value = features[r, c]
        if math.isnan(value):
            problem = "feature is NaN"
        elif math.isinf(value):
            problem = f"feature is {value}"
        else:
            problem = f"feature {value:g} is too large for float32"
        raise InputError(f"{path}: {where(r)}, column {feature_names[c]!r}: {problem}")
    not_binary = (labels != 0) & (labels != 1)
    if not_binary.any():
        r = int(np.flatnonzero(not_binary)[0])
        raise InputError(f"{path}: {where(r)}, column {label_name!r}: label {labels[r]:g} is not 0 or 1")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise InputError(f"{path}: every label is {classes[0]:g}; a classifier needs samples of both classes 0 and 1")
