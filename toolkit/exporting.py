"""`tfkit export SOURCE`: any model into TF Serving's layout, fed with inputs the parity check can read.

The version folder is built by `toolkit.artifacts.export`; this layer chooses what each
signature is fed (it may use parity's input readers and generator, which the artifacts
layer may not), in this order:

1. `--inputs FILE`: an .npz with one array per input name, or PredictionLog TFRecords
   (a warmup file, request logs), which the warmup then replays as they were; a signature
   the file holds nothing for falls through to the next;
2. the source's own data: a training run's held-out rows, or beside an exported version
   its held-out split (tfkit exports) or its warmup requests;
3. values generated from the signature's dtypes and shapes, as `tfkit check` makes them.

A signature that none of them can feed (a string input, an unknown rank) is `Unfeedable`.
Before the version is published its warmup requests are run once through the SavedModel,
as TF Serving will at load: a model that fails on them fails the export, not the server.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from toolkit.artifacts.export import (
    Exported,
    ExportSettings,
    RunInputs,
    SignatureInputs,
    Unfeedable,
    export_version,
)
from toolkit.artifacts.layout import WARMUP_FILE
from toolkit.artifacts.saved_model import DEFAULT_TAGS
from toolkit.artifacts.sources import FolderSource, RunSource, Source, open_source
from toolkit.artifacts.tflite import parse_quantize
from toolkit.errors import InputError
from toolkit.parity.inputs import (
    Inputs,
    MissingInputs,
    file_feeds,
    generated_feeds,
    heldout_features,
    npz_feeds,
    prediction_log_feeds,
)


def export_any(
    source: Source | str | Path,
    base_path,
    name: str,
    *,
    version: int | None = None,
    force: bool = False,
    quantize=(),
    signatures=(),
    tags=DEFAULT_TAGS,
    inputs=None,
    calibration=None,
    value_range=None,
    tflite: bool = True,
    allow_flex: bool = False,
) -> Exported:
    """Export `source` (or the model at that path: a run folder, SavedModel, version folder or .keras
    file) to BASE/NAME/VERSION/ (see `toolkit.artifacts.export.export_version`)."""
    settings = ExportSettings(
        signatures=tuple(signatures),
        tags=tuple(tags),
        quantize=parse_quantize(quantize),
        tflite=tflite,
        allow_flex=allow_flex,
    )
    if calibration is not None and not zipfile.is_zipfile(calibration):
        raise InputError(f"--calibration {calibration}: not an .npz file (one array per input name)")
    if not isinstance(source, Source):
        source = open_source(source)
    provider = ParityInputs(source, inputs, calibration, settings.tags, value_range)
    return export_version(source, provider, base_path, name, version, force, settings)


class ParityInputs:
    """The input provider for `export_version` described in the module docstring."""

    def __init__(self, source: Source, inputs_file=None, calibration_file=None, tags=DEFAULT_TAGS, value_range=None):
        self.source = source
        self.inputs_file = inputs_file
        self.calibration_file = calibration_file
        self.tags = tuple(tags)
        self.value_range = value_range
        self.run_inputs = RunInputs(source) if isinstance(source, RunSource) else None
        self._loaded = None

    def inputs(self, folder: Path, signature: str) -> SignatureInputs:
        spec = self._signature(folder, signature)
        fed = self._inputs(signature, spec)
        self._try_warmup(folder, signature, fed)
        return fed

    def calibration(self, folder: Path, signature: str) -> SignatureInputs | None:
        if self.calibration_file is None:
            return self.run_inputs.calibration(folder, signature) if self.run_inputs else None
        spec = self._signature(folder, signature)
        try:
            samples = npz_feeds(self.calibration_file, spec)
        except InputError as exc:  # its messages name the option it usually reads
            message = str(exc).replace(f"--inputs {self.calibration_file}", f"--calibration {self.calibration_file}")
            raise InputError(f"signature {signature!r}: {message}") from None
        return _signature_inputs(samples, spec)

    def _signature(self, folder: Path, signature: str):
        from toolkit.parity.runners.protos import saved_model_signature

        return saved_model_signature(folder, signature, self.tags)

    def _inputs(self, signature: str, spec) -> SignatureInputs:
        missing = None
        if self.inputs_file is not None:
            try:
                return _signature_inputs(file_feeds(self.inputs_file, spec, signature), spec)
            except MissingInputs as exc:  # it feeds other signatures: this one falls back to the others
                missing = exc
            except InputError as exc:
                raise InputError(f"signature {signature!r}: {exc}") from None
        own = self._own_inputs(signature, spec)
        if own is not None:
            return own
        try:
            return _signature_inputs(generated_feeds(spec, value_range=self.value_range), spec)
        except InputError as exc:
            raise Unfeedable(f"signature {signature!r}: {missing or exc}") from None

    def _own_inputs(self, signature: str, spec) -> SignatureInputs | None:
        """The source's own data for this signature, if it has any."""
        if self.run_inputs is not None:
            try:
                return self.run_inputs.inputs(None, signature)
            except Unfeedable:
                return None  # generation may still feed it
        if not isinstance(self.source, FolderSource):
            return None
        features = heldout_features(self.source.path, spec)
        if features is not None:
            (name,) = spec.inputs
            return SignatureInputs([{name: features}], "heldout", (name,))
        warmup = self.source.path / WARMUP_FILE
        if warmup.is_file():
            try:
                return _signature_inputs(prediction_log_feeds(warmup, spec, signature), spec)
            except InputError:
                # No request for this signature, or a warmup file TF Serving would reject: the export writes
                # a new one, so a broken warmup is a reason to export again, not an obstacle.
                return None
        return None

    def _try_warmup(self, folder: Path, signature: str, fed: SignatureInputs) -> None:
        """Run the warmup requests through the staged SavedModel: TF Serving refuses a version whose warmup fails."""
        from toolkit.parity.runners.eager import EagerRunner, load_saved_model

        if self._loaded is None:
            self._loaded = load_saved_model(folder, self.tags)
        with EagerRunner(self._loaded.signatures[signature], name=f"signature {signature!r}") as runner:
            for call in fed.warmup_calls():
                try:
                    runner.infer(call)
                except InputError as exc:
                    raise InputError(
                        f"{exc} (on the {fed.source} inputs); pass --inputs FILE, or --value-range "
                        "LOW HIGH for generated ones, with values the model accepts"
                    ) from None


def _signature_inputs(inputs: Inputs, spec) -> SignatureInputs:
    """Parity's feeds of one signature as the calls an export feeds it."""
    calls = [call for feed in inputs.feeds for call in feed.calls]
    requests = inputs.source.startswith("predictionlog:")
    return SignatureInputs(calls, inputs.source, spec.row_inputs, requests)
