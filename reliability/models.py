"""Distinguishable versions of the tfkit model, published while a server polls.

Each version is a run trained with its own seed, so versions have different
weights and every answer tells which version produced it. The weights are
registered in the `ModelReference` before the version folder appears, so a
client never meets a version it cannot check.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from reliability.reference import ModelReference


class VersionPublisher:
    """Trains and exports new versions of BASE/NAME; `publish()` returns the version number."""

    def __init__(
        self,
        base_path: str | Path,
        name: str,
        workdir: str | Path,
        reference: ModelReference | None = None,
        first_seed: int = 0,
    ):
        self.base_path = Path(base_path)
        self.name = name
        self.workdir = Path(workdir)
        self.reference = reference
        self._seed = first_seed
        self._lock = threading.Lock()

    def publish(self) -> int:
        """Train the next seed, register its weights, export it as the next version."""
        from toolkit.artifacts.export import export_model
        from toolkit.artifacts.layout import version_numbers
        from toolkit.training.rundir import TRAINING_JSON, train_to_dir

        with self._lock:
            seed, self._seed = self._seed, self._seed + 1
            run_dir = self.workdir / f"run-seed{seed}"
            if not (run_dir / TRAINING_JSON).is_file():
                train_to_dir(run_dir, seed=seed, plots=False)
            record = json.loads((run_dir / TRAINING_JSON).read_text())
            if self.reference is None:
                self.reference = ModelReference(record["config"]["feature_names"])
            model_dir = self.base_path / self.name
            version = max(version_numbers(model_dir), default=0) + 1 if model_dir.is_dir() else 1
            self.reference.add(version, record["weights"]["w"], record["weights"]["b"])
            export_model(run_dir, self.base_path, self.name, version=version)
            return version
