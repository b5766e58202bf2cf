"""Export a model in TF Serving's versioned layout, plus TFLite flatbuffers.

BASE/NAME/VERSION/
  saved_model.pb, variables/, ...      the SavedModel, with the chosen signatures (default: all)
  model.tflite                         float32, where TF Serving's --prefer_tflite_model looks; one
                                       signature runner per fed signature, each also stored as a TF
                                       SignatureDef in `signature_defs_metadata` for TF Serving
  model_{dynamic,float16,int8}.tflite  quantized variants, when asked for
  assets.extra/tf_serving_warmup_requests   TFRecord of PredictionLog Predict requests
  assets.extra/tfkit_inputs/<signature>.npz  the inputs each signature was fed
  assets.extra/tfkit_golden/<signature>.{json,npz}  golden file: those inputs (for a training run also the
                                       boundary and extreme cases `tfkit check` feeds), the SavedModel's
                                       outputs, hashes, versions, policies (toolkit.artifacts.golden)
  manifest.json                        source, versions, signatures, inputs, TFLite facts, sha256 per file

What to export comes from a `Source` (toolkit.artifacts.sources); what to feed
each signature (warmup, int8 calibration, golden outputs) from an input provider:
a training run feeds its own held-out rows (`RunInputs`), other models get theirs
from the pipeline layer (toolkit.exporting). A signature nothing can feed is kept
without warmup, TFLite runner or inputs when no --signature named it.

The version folder is built under BASE/NAME/.tmp-* (a name TF Serving ignores:
versions are integers) and renamed into place in one step, so a server
polling BASE/NAME never sees it half-written. Replacing a version (--force)
swaps the folders atomically where the kernel supports it (renameat2).
"""

from __future__ import annotations

import ctypes
import errno
import importlib.metadata
import itertools
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from toolkit import __version__
from toolkit.artifacts import saved_model
from toolkit.artifacts.arrays import save_arrays
from toolkit.artifacts.golden import GoldenFeed
from toolkit.artifacts.golden_writer import write_golden
from toolkit.artifacts.inspect import saved_model_info, tflite_facts
from toolkit.artifacts.layout import (
    INPUTS_DIR,
    MANIFEST_FILE,
    WARMUP_FILE,
    sha256_file,
    version_folders,
    version_numbers,
)
from toolkit.artifacts.sources import RunSource, Source
from toolkit.artifacts.tflite import ConversionError, convert, parse_quantize, tflite_filename
from toolkit.errors import InputError
from toolkit.tfenv import import_tf

# TF Serving replays at most 1000 warmup records; a few real samples per signature warm every kernel.
WARMUP_RECORDS = 10
MAX_WARMUP_RECORDS = 1000
# Samples fed to the int8 converter to calibrate activation ranges, per signature.
REPRESENTATIVE_SAMPLES = 500


@dataclass
class SignatureInputs:
    """What one signature is fed: calls of {input: ndarray}."""

    calls: list[dict]
    #: where they come from: heldout, generated, npz:PATH, predictionlog:PATH, ...
    source: str
    #: inputs whose first axis is the batch; empty: each call is one sample
    row_inputs: tuple[str, ...] = ()
    #: the calls are logged requests (a PredictionLog file): the warmup replays them whole
    requests: bool = False

    def rows(self) -> Iterator[dict]:
        """One-row calls (inputs without rows go whole with each); a fixed-shape signature's calls as they are."""
        for call in self.calls:
            if not self.row_inputs:
                yield call
                continue
            for i in range(len(call[self.row_inputs[0]])):
                yield {n: v[i : i + 1] if n in self.row_inputs else v for n, v in call.items()}

    def warmup_calls(self) -> list[dict]:
        """The requests the warmup file replays: logged requests as they were, else the first rows."""
        if self.requests:
            return self.calls[:MAX_WARMUP_RECORDS]
        return list(itertools.islice(self.rows(), WARMUP_RECORDS))

    def describe(self) -> dict:
        rows = sum(1 for _ in self.rows())
        return {"source": self.source, "calls": len(self.calls), "rows": rows}


class Unfeedable(InputError):
    """A signature that cannot be fed without data (a string input, an unknown rank)."""


class InputProvider(Protocol):
    """Where an export gets what it feeds each signature of the SavedModel staged in `folder`."""

    def inputs(self, folder: Path, signature: str) -> SignatureInputs:
        """The inputs for warmup and golden outputs (and int8 calibration without `calibration`);
        raises Unfeedable when the signature cannot be fed without data."""

    def calibration(self, folder: Path, signature: str) -> SignatureInputs | None:
        """Calibration samples for int8, or None to calibrate on `inputs`."""


class RunInputs:
    """A training run's own data: serving_default gets the held-out rows, and int8 calibrates on a seeded
    draw of training rows (the split is stored in class order: a prefix would hold one class only)."""

    def __init__(self, source: RunSource):
        self.run = source.run

    def inputs(self, folder: Path, signature: str) -> SignatureInputs:
        if signature != "serving_default":
            raise Unfeedable(
                f"signature {signature!r} takes serialized tf.Example strings; pass --inputs FILE with them to feed it"
            )
        return SignatureInputs([{"features": self.run.heldout.features}], "heldout", ("features",))

    def calibration(self, folder: Path, signature: str) -> SignatureInputs | None:
        train = self.run.train_data().features
        draw = np.random.default_rng(self.run.config["seed"]).permutation(len(train))[:REPRESENTATIVE_SAMPLES]
        return SignatureInputs([{"features": train[draw]}], "train (seeded draw)", ("features",))


@dataclass
class ExportSettings:
    """What to export besides the SavedModel; the defaults suit a tfkit run."""

    signatures: tuple[str, ...] = ()  # empty: every signature
    tags: tuple[str, ...] = saved_model.DEFAULT_TAGS  # the MetaGraph to export (TF Serving's --saved_model_tags)
    quantize: tuple[str, ...] = ()
    tflite: bool = True
    allow_flex: bool = False


@dataclass
class Exported:
    """What an export made: the version folder, which signatures were fed, and the TFLite files' facts."""

    folder: Path
    source: dict
    fed: dict[str, str]  # signature -> where its inputs came from
    not_fed: dict[str, str] = field(default_factory=dict)
    tflite: dict[str, dict] = field(default_factory=dict)


def export_model(
    run_dir: str | Path,
    base_path: str | Path,
    name: str,
    version: int | None = None,
    force: bool = False,
    quantize: Sequence[str] | str = (),
) -> Path:
    """Export the training run at `run_dir` to BASE/NAME/VERSION/ and return that folder (see `export_version`)."""
    settings = ExportSettings(quantize=parse_quantize(quantize))
    source = RunSource(Path(run_dir))
    return export_version(source, RunInputs(source), base_path, name, version, force, settings).folder


def export_version(
    source: Source,
    provider: InputProvider,
    base_path: str | Path,
    name: str,
    version: int | None = None,
    force: bool = False,
    settings: ExportSettings | None = None,
) -> Exported:
    """Build BASE/NAME/VERSION/ from `source`, fed by `provider`, and publish it atomically.

    `version=None` takes the next integer after the highest existing one (1 if none).
    An existing version is replaced only with `force=True`. Nothing is published on an error.
    """
    settings = settings or ExportSettings()
    _check_target(name, version)
    if settings.quantize and not settings.tflite:
        raise InputError("--quantize makes TFLite variants: drop --no-tflite, or --quantize")
    model_dir = Path(base_path) / name
    if model_dir.exists() and not model_dir.is_dir():
        raise InputError(f"{model_dir}: exists and is not a directory")
    model_dir.mkdir(parents=True, exist_ok=True)
    if version is None:
        version = max(version_numbers(model_dir), default=0) + 1
    # TF Serving reads 00000123/ as version 123: an existing folder of that number is the one replaced.
    final = version_folders(model_dir).get(version, model_dir / str(version))
    if final.exists() and not force:
        raise InputError(
            f"{final}: version {version} already exists; pass --force to replace it or choose another --version"
        )

    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    try:
        # mkdtemp makes a 0700 folder; a server running as another user must read it.
        os.chmod(staging, 0o755)
        exported = _build_version(source, provider, staging, name, version, settings)
        _publish(staging, final, force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    exported.folder = final
    return exported


def _check_target(name: str, version: int | None) -> None:
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise InputError(f"--name: {name!r} is not a valid model name (one folder name, no slashes)")
    if version is not None and version < 1:
        raise InputError(f"--version must be a positive integer, got {version}")


def _build_version(
    source: Source, provider: InputProvider, folder: Path, name: str, version: int, settings: ExportSettings
) -> Exported:
    source.write_saved_model(folder)
    kept = _keep_signatures(source, folder, settings)
    inputs, not_fed = _feed(provider, folder, kept, explicit=bool(settings.signatures))
    calibration = {}
    if "int8" in settings.quantize:
        calibration = {key: provider.calibration(folder, key) or inputs[key] for key in inputs}
    tflite = _write_tflite_files(source, folder, list(inputs), calibration, settings) if settings.tflite else {}
    _write_warmup(folder / WARMUP_FILE, name, inputs)
    _write_golden(folder, inputs, settings.tags, name, version)
    described = source.describe()
    _write_manifest(
        folder,
        {
            "name": name,
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": {
                "tfkit": __version__,
                "tensorflow": import_tf().__version__,
                "litert": importlib.metadata.version("ai-edge-litert"),
            },
            "source": described,
            **source.manifest_fields(),
            "tags": list(settings.tags),
            "signatures": saved_model_info(folder, settings.tags)["meta_graphs"][0]["signatures"],
            "inputs": {key: {**fed.describe(), "file": _inputs_file(key)} for key, fed in inputs.items()},
            "not_fed": not_fed,
            "calibration": {key: samples.describe() for key, samples in calibration.items()},
            "tflite": {facts["variant"]: filename for filename, facts in tflite.items()},
            "tflite_files": tflite,
        },
    )
    return Exported(folder, described, {key: fed.source for key, fed in inputs.items()}, not_fed, tflite)


def _keep_signatures(source: Source, folder: Path, settings: ExportSettings) -> list[str]:
    """The signatures to keep (--signature, else all), after removing the others from the staged SavedModel."""
    available = saved_model.signature_keys(folder, settings.tags, where=source.path)
    if not available:
        raise InputError(
            f"{source.path}: the SavedModel has no signature, so TF Serving has nothing to call; save "
            "a tf.function with an input_signature as one (tf.saved_model.save(module, DIR, signatures="
            "{'serving_default': module.serve})), or export the Keras model (.keras file) instead"
        )
    unknown = [key for key in settings.signatures if key not in available]
    if unknown:
        raise InputError(
            f"--signature {', '.join(unknown)}: {source.path} has no such signature (it has: {', '.join(available)})"
        )
    keep = list(dict.fromkeys(settings.signatures)) or available
    saved_model.keep_signatures(folder, settings.tags, keep)
    return keep


def _feed(
    provider: InputProvider, folder: Path, keys: list[str], explicit: bool
) -> tuple[dict[str, SignatureInputs], dict[str, str]]:
    """Inputs per signature, and why the others cannot be fed. A signature chosen with --signature must be
    fed; of all signatures (the default), at least one."""
    inputs, not_fed = {}, {}
    for key in keys:
        try:
            inputs[key] = provider.inputs(folder, key)
        except Unfeedable as exc:
            if explicit:
                raise
            not_fed[key] = str(exc)
    if not inputs:
        raise InputError("; ".join(not_fed.values()))
    return inputs, not_fed


def _write_tflite_files(
    source: Source, folder: Path, keys: list[str], calibration: dict[str, SignatureInputs], settings: ExportSettings
) -> dict[str, dict]:
    """model.tflite and each --quantize variant, with one signature runner per fed signature; returns
    {file name: facts}."""
    # Imported here: it imports TensorFlow, which must first be loaded quietly by import_tf().
    import_tf()
    from serving.tflite_signatures import embed_signature_defs

    files = {}
    for quantization in (None, *settings.quantize):
        filename = tflite_filename(quantization)
        dataset = _representative_dataset(keys, calibration) if quantization == "int8" else None
        try:
            flatbuffer = convert(folder, keys, quantization, dataset, settings.tags, settings.allow_flex)
        except ConversionError as exc:
            raise _tflite_error(exc, filename, source, keys) from None
        # TF Serving's --prefer_tflite_model ignores the signature runner signatures and
        # reads TF-style SignatureDefs from the metadata; without them it would invent
        # aliases from tensor names (serving_default_features) and refuse `features`.
        (folder / filename).write_bytes(embed_signature_defs(flatbuffer))
        facts = tflite_facts(folder / filename)
        files[filename] = {
            "variant": quantization or "float32",
            "signatures": facts["signatures"],
            "quantization": facts["quantization"],
            "needs_flex": facts["needs_flex"],
            "flex_ops": facts["flex_ops"],
        }
    return files


def _tflite_error(exc: ConversionError, filename: str, source: Source, keys: list[str]) -> InputError:
    signatures = ", ".join(map(repr, keys))
    if exc.flex_ops:
        return InputError(
            f"{filename}: signature(s) {signatures} of {source.path} need TF Select (Flex) ops "
            f"{', '.join(exc.flex_ops)}, which LiteRT and most edge runtimes lack; pass --allow-flex "
            "to write it for devices with the Flex delegate, --no-tflite to export without TFLite, "
            "or --signature to keep only other signatures"
        )
    return InputError(
        f"{filename}: cannot convert signature(s) {signatures} of {source.path} to TFLite: "
        f"{exc.cause}; pass --no-tflite to export without TFLite"
    )


def _representative_dataset(keys: list[str], calibration: dict[str, SignatureInputs]):
    """The int8 converter's calibration rows: every signature's, one row per step (a seeded draw of
    REPRESENTATIVE_SAMPLES when there are more); tagged with the signature when there are several."""
    samples = {key: _calibration_rows(calibration[key]) for key in keys}

    def dataset():
        for key in keys:
            for row in samples[key]:
                yield row if len(keys) == 1 else (key, row)

    return dataset


def _calibration_rows(fed: SignatureInputs) -> list[dict]:
    rows = list(fed.rows())
    if len(rows) <= REPRESENTATIVE_SAMPLES:
        return rows
    # A seeded draw: files are often sorted (by class, by time), so a prefix would miss part of the data.
    return [rows[i] for i in np.random.default_rng(0).permutation(len(rows))[:REPRESENTATIVE_SAMPLES]]


def _write_warmup(path: Path, name: str, inputs: dict[str, SignatureInputs]) -> None:
    """PredictionLog Predict requests for each fed signature (`SignatureInputs.warmup_calls`), at most
    TF Serving's 1000 in all."""
    tf = import_tf()
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    requests = [(key, call) for key, fed in inputs.items() for call in fed.warmup_calls()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for key, call in requests[:MAX_WARMUP_RECORDS]:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.model_spec.signature_name = key
            for input_name, value in call.items():
                request.inputs[input_name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _inputs_file(signature: str) -> str:
    """INPUTS_DIR/<signature>.npz, with characters a file name cannot hold replaced."""
    safe = re.sub(r"[^\w.-]", "_", signature)
    return f"{INPUTS_DIR}/{safe}.npz"


def _write_golden(
    folder: Path, inputs: dict[str, SignatureInputs], tags: tuple[str, ...], name: str, version: int
) -> None:
    """The evidence a version carries about its signatures: the inputs each was fed, one .npz per signature
    (rows along the first axis, or one sample per entry for a fixed-shape signature; strings kept whole),
    which `tfkit check --inputs` reads, and the golden file of each: those inputs with the SavedModel's
    outputs. A training run's held-out rows also get the boundary and extreme cases `tfkit check` feeds.
    Written last but the manifest: a golden file records the sha256 of every .tflite file."""
    for key, fed in inputs.items():
        save_arrays(folder / _inputs_file(key), _stacked(fed))
        if fed.source == "heldout":
            features = np.concatenate([call[fed.row_inputs[0]] for call in fed.calls])
            write_golden(folder, heldout=features, signature=key, tags=tags, name=name, version=version)
        else:
            feeds = [GoldenFeed(fed.source, fed.calls, batched=bool(fed.row_inputs))]
            write_golden(folder, feeds=feeds, signature=key, tags=tags, name=name, version=version, source=fed.source)


def _stacked(fed: SignatureInputs) -> dict[str, np.ndarray]:
    """All calls as one array per input: rows concatenated, or fixed-shape samples stacked. Inputs without
    rows beside batched ones go once, as the first call had them."""
    first = fed.calls[0]
    if not fed.row_inputs:
        return {name: np.stack([call[name] for call in fed.calls]) for name in first}
    return {
        name: np.concatenate([call[name] for call in fed.calls]) if name in fed.row_inputs else value
        for name, value in first.items()
    }


def _write_manifest(folder: Path, manifest: dict) -> None:
    """manifest.json, written last: the sha256 of every other file of the version."""
    manifest["files"] = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}
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
