"""The models `tfkit export` takes, each a `Source` that writes a complete SavedModel into the
version folder being built:

  tfkit-run       a `tfkit train` run folder (training.json): the trained module's signatures
  keras           a Keras 3 .keras file: serving_default built with Keras's own `ExportArchive`, its
                  inputs named as the model's inputs, its outputs as the model's outputs (or output layers)
  saved-model     any SavedModel folder (TF2, or TF1 with signatures), copied file for file
  version-folder  a TF Serving version folder (or BASE/NAME: its latest version), copied likewise with its
                  assets.extra (held-out data, ...), except what the export writes anew
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from toolkit.artifacts.layout import (
    HELDOUT_FILE,
    INPUTS_DIR,
    MANIFEST_FILE,
    WARMUP_FILE,
    resolve_model,
    sha256_file,
    tree_sha256,
    version_number,
)
from toolkit.errors import InputError, root_cause
from toolkit.tfenv import import_tf

KERAS_SUFFIX = ".keras"
#: what a tfkit manifest says about training, carried over when a tfkit version is exported again
TRAINING_FIELDS = ("seed", "training", "data", "feature_names", "metrics")


class Source:
    """A model to export; `kind` names which (see the module docstring)."""

    kind = ""

    def __init__(self, path: Path):
        self.path = path

    def describe(self) -> dict:
        """Kind, path and sha256 (of the file, or of every file of the folder), for the manifest."""
        digest = tree_sha256(self.path) if self.path.is_dir() else sha256_file(self.path)
        return {"kind": self.kind, "path": str(self.path.absolute()), "sha256": digest}

    def default_name(self) -> str:
        """A model name when none is given: the file or folder name."""
        return self.path.stem

    def write_saved_model(self, folder: Path) -> None:
        """Write the whole SavedModel (every signature) into the empty `folder`."""
        raise NotImplementedError

    def manifest_fields(self) -> dict:
        """What the source adds to manifest.json besides its description."""
        return {}


class RunSource(Source):
    kind = "tfkit-run"

    def __init__(self, path: Path):
        from toolkit.training.rundir import load_run

        super().__init__(path)
        self.run = load_run(path)

    def write_saved_model(self, folder: Path) -> None:
        from toolkit.training.data import save_npz

        model = self.run.model
        import_tf().saved_model.save(model, str(folder), signatures=model.signatures())
        # The held-out split travels with the model, so checks find real samples beside it.
        (folder / HELDOUT_FILE).parent.mkdir(exist_ok=True)
        save_npz(folder / HELDOUT_FILE, self.run.heldout)

    def manifest_fields(self) -> dict:
        config = self.run.config
        return {
            "seed": config["seed"],
            "training": {k: config[k] for k in ("steps", "learning_rate", "batch_size", "test_fraction")},
            "data": {
                "source": config["data_source"],
                "hash": config["data_hash"],
                "num_train": config["num_train"],
                "num_heldout": config["num_heldout"],
            },
            "feature_names": config["feature_names"],
            "metrics": {"heldout": self.run.record["heldout"], "final_train": self.run.record["final_train"]},
        }


class KerasSource(Source):
    kind = "keras"

    def write_saved_model(self, folder: Path) -> None:
        import_tf()
        import keras

        try:
            model = keras.models.load_model(self.path, compile=False)
        except Exception as exc:  # Keras raises many types for files it cannot rebuild
            raise InputError(f"cannot load Keras model {self.path}: {root_cause(exc)}") from None
        serve = _keras_serve(model, self.path)
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", serve, input_signature=[_keras_specs(model)])
        archive.write_out(str(folder), verbose=False)


def _keras_specs(model) -> dict:
    """{input name: tf.TensorSpec} of a Keras model's inputs, with a dynamic batch dimension."""
    tf = import_tf()
    return {t.name: tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=t.name) for t in model.inputs}


def _keras_serve(model, path: Path):
    """The serving function: named inputs in, named outputs out (the model's output names, a
    Sequential model's last layer)."""
    tf = import_tf()
    inputs = getattr(model, "inputs", None)  # a subclassed model declares none
    if not inputs:
        raise InputError(
            f"{path}: a subclassed Keras model has no declared inputs to name; export it with "
            "model.export(DIR) and pass DIR, or rebuild it as a functional or Sequential model"
        )
    single = inputs[0].name if len(inputs) == 1 else None
    names = getattr(model, "output_names", None) or [model.layers[-1].name]

    def serve(feed: dict):
        outputs = model(feed[single] if single else feed, training=False)
        if isinstance(outputs, dict):
            return dict(outputs)
        return dict(zip(names, tf.nest.flatten(outputs), strict=True))

    return serve


class FolderSource(Source):
    """A SavedModel folder or a TF Serving version folder."""

    def __init__(self, path: Path, kind: str):
        super().__init__(path)
        self.kind = kind

    def default_name(self) -> str:
        # A version folder is named by its number; the model is its parent.
        return self.path.parent.name if self.kind == "version-folder" else self.path.name

    def write_saved_model(self, folder: Path) -> None:
        for path in sorted(self.path.rglob("*")):
            relative = path.relative_to(self.path).as_posix()
            if path.is_file() and not written_anew(relative):
                target = folder / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                # Not copy2: a read-only source (TF Serving's test models) would make a read-only version.
                shutil.copyfile(path, target)
                os.chmod(target, 0o644)

    def manifest_fields(self) -> dict:
        import json

        manifest = self.path / MANIFEST_FILE
        try:
            previous = json.loads(manifest.read_text()) if manifest.is_file() else {}
        except ValueError:
            previous = {}
        return {key: previous[key] for key in TRAINING_FIELDS if key in previous}


def written_anew(relative: str) -> bool:
    """Files of a version folder that an export writes itself rather than copying: TFLite files, the
    warmup file, the inputs it fed and the manifest."""
    top_level_tflite = "/" not in relative and relative.endswith(".tflite")
    return top_level_tflite or relative in (WARMUP_FILE, MANIFEST_FILE) or relative.startswith(INPUTS_DIR + "/")


def open_source(path) -> Source:
    """The Source at `path`: a .keras file, a tfkit run folder, a SavedModel or version folder, or a
    model folder of versions (its latest)."""
    from toolkit.training.rundir import TRAINING_JSON

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix == KERAS_SUFFIX:
            return KerasSource(path)
        raise InputError(
            f"{path}: not a Keras {KERAS_SUFFIX} file; export takes a tfkit run folder, a SavedModel "
            f"folder, a TF Serving version folder or a Keras {KERAS_SUFFIX} file"
        )
    if (path / TRAINING_JSON).is_file():
        return RunSource(path)
    try:
        folder = resolve_model(path)
    except InputError:
        raise InputError(
            f"{path}: neither a tfkit run folder ({TRAINING_JSON}), a SavedModel folder "
            "(saved_model.pb) nor a model folder with integer-named versions"
        ) from None
    return FolderSource(folder, "version-folder" if version_number(folder) is not None else "saved-model")
