"""Export a training run in TF Serving's versioned layout, plus TFLite flatbuffers.

BASE/NAME/VERSION/
  saved_model.pb, variables/           the SavedModel (serving_default, classify, regress)
  model.tflite                         float32, where TF Serving's --prefer_tflite_model looks
  model_{dynamic,float16,int8}.tflite  quantized variants, when asked for; every .tflite keeps
                                       its signature runner signature and carries the same as a
                                       TF SignatureDef in `signature_defs_metadata` for TF Serving
  assets.extra/tf_serving_warmup_requests   TFRecord of PredictionLog Predict requests
  assets.extra/heldout.npz             the held-out split, real samples next to the model
  assets.extra/tfkit_golden/serving_default.{json,npz}   golden file: held-out and boundary rows,
                                       the SavedModel's outputs, hashes, versions, policies
  manifest.json                        versions, seed, data hash, metrics, signatures, sha256 per file

The version folder is built under BASE/NAME/.tmp-* (a name TF Serving ignores:
versions are integers) and renamed into place in one step, so a server
polling BASE/NAME never sees it half-written. Replacing a version (--force)
swaps the folders atomically where the kernel supports it (renameat2).
"""

from __future__ import annotations

import ctypes
import errno
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from toolkit import __version__
from toolkit.training.data import save_npz
from toolkit.artifacts.golden_writer import write_golden
from toolkit.artifacts.layout import sha256_file, version_numbers
from toolkit.artifacts.tflite import convert, parse_quantize, tflite_filename
from toolkit.errors import InputError
from toolkit.artifacts.inspect import saved_model_info
from toolkit.training.model import tf
from toolkit.training.rundir import Run, load_run

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
HELDOUT_FILE = "assets.extra/heldout.npz"
MANIFEST_FILE = "manifest.json"
# TF Serving replays at most 1000 warmup records; a few real samples warm every kernel.
WARMUP_RECORDS = 10
# Samples fed to the int8 converter to calibrate activation ranges.
REPRESENTATIVE_SAMPLES = 500




def export_model(
    run_dir: str | Path,
    base_path: str | Path,
    name: str,
    version: int | None = None,
    force: bool = False,
    quantize: Sequence[str] | str = (),
) -> Path:
    """Export the run at `run_dir` to BASE/NAME/VERSION/ and return that folder.

    `version=None` takes the next integer after the highest existing one (1 if none).
    An existing version is replaced only with `force=True`.
    """
    quantize = parse_quantize(quantize)
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise InputError(f"--name: {name!r} is not a valid model name (one folder name, no slashes)")
    if version is not None and version < 1:
        raise InputError(f"--version must be a positive integer, got {version}")
    run = load_run(run_dir)
    model_dir = Path(base_path) / name
    if model_dir.exists() and not model_dir.is_dir():
        raise InputError(f"{model_dir}: exists and is not a directory")
    model_dir.mkdir(parents=True, exist_ok=True)
    if version is None:
        version = max(version_numbers(model_dir), default=0) + 1
    final = model_dir / str(version)
    if final.exists() and not force:
        raise InputError(f"{final}: version {version} already exists; pass --force to replace it or choose another --version")

    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    try:
        # mkdtemp makes a 0700 folder; a server running as another user must read it.
        os.chmod(staging, 0o755)
        _build_version(run, staging, name, version, quantize)
        _publish(staging, final, force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _build_version(run: Run, folder: Path, name: str, version: int, quantize: tuple[str, ...]) -> None:
    tf.saved_model.save(run.model, str(folder), signatures=run.model.signatures())
    tflite = {"float32": _write_tflite(folder, None, run)}
    for quantization in quantize:
        tflite[quantization] = _write_tflite(folder, quantization, run)
    _write_warmup(folder / WARMUP_FILE, name, run.heldout.features[:WARMUP_RECORDS])
    save_npz(folder / HELDOUT_FILE, run.heldout)
    write_golden(folder, heldout=run.heldout.features, name=name, version=version)
    _write_manifest(folder, run, name, version, tflite)


def _write_tflite(folder: Path, quantization: str | None, run: Run) -> str:
    """Convert the staged SavedModel's serving_default to TFLite; return the file name."""
    # Imported here: it imports TensorFlow, which must first be loaded quietly by import_tf().
    from serving.tflite_signatures import embed_signature_defs

    representative_dataset = None
    if quantization == "int8":
        # A seeded random draw: the split is stored in class order, so a prefix
        # would calibrate on one class only and clip the other's logits.
        train_features = run.train_data().features
        rng = np.random.default_rng(run.config["seed"])
        samples = train_features[rng.permutation(len(train_features))[:REPRESENTATIVE_SAMPLES]]

        def representative_dataset():
            for row in samples:
                yield {"features": row[None, :]}

    flatbuffer = convert(folder, ["serving_default"], quantization, representative_dataset)
    filename = tflite_filename(quantization)
    # TF Serving's --prefer_tflite_model ignores the signature runner signatures and
    # reads TF-style SignatureDefs from the metadata; without them it would invent
    # aliases from tensor names (serving_default_features) and refuse `features`.
    (folder / filename).write_bytes(embed_signature_defs(flatbuffer))
    return filename



def _write_warmup(path: Path, name: str, samples: np.ndarray) -> None:
    """One PredictionLog per held-out sample, each a Predict request on serving_default."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in samples:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.model_spec.signature_name = "serving_default"
            request.inputs["features"].CopyFrom(tf.make_tensor_proto(row[None, :].astype(np.float32)))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _write_manifest(folder: Path, run: Run, name: str, version: int, tflite: dict) -> None:
    config = run.config
    manifest = {
        "name": name,
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {
            "tfkit": __version__,
            "tensorflow": tf.__version__,
            "litert": importlib.metadata.version("ai-edge-litert"),
        },
        "seed": config["seed"],
        "training": {k: config[k] for k in ("steps", "learning_rate", "batch_size", "test_fraction")},
        "data": {
            "source": config["data_source"],
            "hash": config["data_hash"],
            "num_train": config["num_train"],
            "num_heldout": config["num_heldout"],
        },
        "feature_names": config["feature_names"],
        "metrics": {"heldout": run.record["heldout"], "final_train": run.record["final_train"]},
        "signatures": saved_model_info(folder)["meta_graphs"][0]["signatures"],
        "tflite": tflite,
        "files": {
            str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()
        },
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")




def _publish(staging: Path, final: Path, force: bool) -> None:
    """Move the finished version into place; with `force`, replace an existing one atomically."""
    if not final.exists():
        try:
            os.rename(staging, final)
            return
        except OSError:
            if not final.exists():
                raise
            # Another exporter published this version while we were building.
    if not force:
        raise InputError(f"{final}: version {final.name} already exists; pass --force to replace it")
    if _exchange(staging, final):
        shutil.rmtree(staging)  # now holds the old version
        return
    # No atomic exchange on this system: the version is briefly absent, never half-written.
    retired = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=final.parent))
    os.rename(final, retired / final.name)
    os.rename(staging, final)
    shutil.rmtree(retired)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux's renameat2(RENAME_EXCHANGE); False if unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # the kernel/filesystem cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))
