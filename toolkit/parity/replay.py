"""Replay PredictionLog files (TF Serving request logs, warmup files) as a check's inputs.

Every logged call for the checked model and signature becomes one call of
every runtime, with its tensors exactly as logged:

- a Predict request: its input tensors;
- a Classify or Regress request, or a MultiInference task: its tf.Examples,
  serialized as TF Serving feeds them (a context is prepended to every
  example), on the signature's one string input.

Other records (other signatures, other log kinds, other models: see
`_replayed_model`) are skipped and counted. A request without a model name
(warmup files often leave it empty) is always replayed. When every replayed record carries its response (a
request log does, a warmup file does not), the responses become
`Replay.answers`, what production answered, which the check runs as one more
runtime ("logged:<file or prefix>").
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.errors import InputError
from toolkit.parity.inputs import MissingInputs
from toolkit.parity.runners.base import Signature

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD, REGRESS_METHOD = "tensorflow/serving/classify", "tensorflow/serving/regress"


@dataclass
class Replay:
    """The calls read from PredictionLog files, and the logged answers when every call has one."""

    files: list[Path]
    calls: dict[Path, list[dict]] = field(default_factory=dict)  # per file, in record order
    answers: list[dict | None] = field(default_factory=list)  # per call, files in order
    skipped: collections.Counter = field(default_factory=collections.Counter)
    model_note: str = ""  # set when the replayed requests name another model than the checked one

    @property
    def label(self) -> str:
        """The file's name, or the common prefix of several files' names followed by `*`."""
        if len(self.files) == 1:
            return self.files[0].name
        return os.path.commonprefix([p.name for p in self.files]) + "*"

    def recorded(self) -> list[tuple[dict, dict]] | None:
        """(inputs, logged outputs) of every call, or None unless every call has its answer."""
        inputs = [call for calls in self.calls.values() for call in calls]
        if not inputs or any(answer is None for answer in self.answers):
            return None
        return list(zip(inputs, self.answers))

    def notes(self) -> list[str]:
        """What was skipped, and why the logged answers are not compared when they are not."""
        where = f"--inputs {self.files[0] if len(self.files) == 1 else self.label}"
        notes = [f"{where}: {self.model_note}"] if self.model_note else []
        if self.skipped:
            notes.append(f"{where}: skipped " + "; ".join(f"{n} {reason}" for reason, n in self.skipped.items()))
        missing = sum(answer is None for answer in self.answers)
        if 0 < missing < len(self.answers):
            notes.append(
                f"{where}: {missing} of {len(self.answers)} replayed records have no complete response "
                "(a warmup record, or a Predict with an output_filter): the logged answers are not compared"
            )
        return notes


def read_replay(
    paths: list[Path], signature: Signature, signature_name: str, model_name: str | None = None, explicit: bool = False
) -> Replay:
    """The calls of `signature_name` in PredictionLog files, of model `model_name` (see `_replayed_model`)."""
    replay = Replay(list(paths))
    found = []  # (path, model name, call, answer) of every logged call for the signature
    for path in paths:
        replay.calls[path] = []
        for index, log in _prediction_logs(path):
            for name, call, answer in _calls_of(log, signature, signature_name, replay.skipped):
                _check_inputs(call, signature, path, index)
                found.append((path, name, call, answer))
    kept, note = _replayed_model({name for _, name, _, _ in found if name}, model_name, explicit)
    for path, name, call, answer in found:
        if kept is None or not name or name == kept:
            replay.calls[path].append(call)
            replay.answers.append(answer)
        else:
            replay.skipped[f"requests for model {name!r}"] += 1
    replay.model_note = note
    if not replay.answers:
        seen = "; ".join(f"{n} {reason}" for reason, n in replay.skipped.items()) or "no records"
        hint = (
            "; pass --model-name NAME to replay another model's requests"
            if any(reason.startswith("requests for model") for reason in replay.skipped)
            else ""
        )
        raise MissingInputs(
            f"--inputs {replay.label}: no logged request for signature {signature_name!r}"
            f"{f' of model {kept!r}' if kept else ''} (found: {seen}){hint}"
        )
    return replay


def _replayed_model(names: set, model_name: str | None, explicit: bool) -> tuple[str | None, str]:
    """Which model's requests to replay (None: all), and a note when they name another model.

    A model named with --model-name is the one. Otherwise the checked model's
    requests are, when the files name it or several models (a log shared by
    models with one logging config); when they name a single other model (a
    warmup file written under another name), its requests are replayed.
    """
    if not model_name or explicit or model_name in names or len(names) > 1:
        return model_name, ""
    if not names:
        return None, ""
    (other,) = names
    return None, (
        f"the logged requests name model {other!r}, not {model_name!r}: replayed as its requests "
        "(--model-name picks one model's requests)"
    )


def _calls_of(log, signature: Signature, signature_name: str, skipped) -> list:
    """(model name, call, logged outputs or None) of one PredictionLog's calls for `signature_name`;
    counts what does not apply in `skipped`."""
    kind = log.WhichOneof("log_type")
    entry = getattr(log, kind) if kind else None
    if kind == "predict_log":
        specs = [(entry.request.model_spec, "Predict")]
    elif kind in ("classify_log", "regress_log"):
        specs = [(entry.request.model_spec, "Classify" if kind == "classify_log" else "Regress")]
    elif kind == "multi_inference_log":
        specs = [(task.model_spec, "MultiInference") for task in entry.request.tasks]
    else:
        skipped[f"{kind or 'empty'} records"] += 1
        return []
    calls = []
    for index, (spec, api) in enumerate(specs):
        if (spec.signature_name or DEFAULT_SIGNATURE) != signature_name:
            skipped[f"requests for signature {spec.signature_name or DEFAULT_SIGNATURE!r}"] += 1
        elif api != "Predict" and _examples_input(signature) is None:
            skipped[f"{api} requests (the signature has no single string input to take tf.Examples)"] += 1
        elif api == "Predict":
            calls.append((spec.name, *_predict_call(entry)))
        else:
            calls.append((spec.name, *_examples_call(kind, entry, index, signature)))
    return calls


def _predict_call(entry) -> tuple[dict, dict | None]:
    from toolkit.parity.runners.protos import from_tensor_proto

    call = {name: from_tensor_proto(tensor) for name, tensor in entry.request.inputs.items()}
    outputs = {name: from_tensor_proto(tensor) for name, tensor in entry.response.outputs.items()}
    complete = outputs and not entry.request.output_filter
    return call, outputs if complete else None


def _examples_call(kind: str, entry, task: int, signature: Signature) -> tuple[dict, dict | None]:
    """A Classify/Regress request or MultiInference task as a call of its serialized tf.Examples."""
    return (
        {_examples_input(signature): _serialized_examples(entry.request.input)},
        _examples_answer(kind, entry, task, signature),
    )


def _examples_answer(kind: str, entry, task: int, signature: Signature) -> dict | None:
    """The signature's outputs as a Classify/Regress response (or a MultiInference task's result) holds them."""
    if kind == "multi_inference_log":
        results = entry.response.results
        which = results[task].WhichOneof("result") if task < len(results) else None
        if which is None:
            return None
        result, classified = getattr(results[task], which), which == "classification_result"
    else:
        result, classified = entry.response.result, kind == "classify_log"
    return _classification_outputs(result, signature) if classified else _regression_outputs(result)


def _examples_input(signature: Signature) -> str | None:
    """The input that takes serialized tf.Examples: the signature's only input, when it is a string."""
    if len(signature.inputs) != 1:
        return None
    ((name, spec),) = signature.inputs.items()
    return name if np.dtype(spec.dtype).kind in "OSU" else None


def _serialized_examples(input_proto) -> np.ndarray:
    """An Input proto's examples serialized as TF Serving feeds them: a context, if any, prepended to each
    (concatenated serializations merge into one tf.Example)."""
    if input_proto.WhichOneof("kind") == "example_list_with_context":
        context = input_proto.example_list_with_context.context.SerializeToString()
        examples = input_proto.example_list_with_context.examples
    else:
        context, examples = b"", input_proto.example_list.examples
    values = np.empty(len(examples), dtype=object)
    values[:] = [context + example.SerializeToString() for example in examples]
    return values


def _classification_outputs(result, signature: Signature) -> dict | None:
    """The signature's `scores` and `classes` [examples, classes] from a ClassificationResult."""
    if not result.classifications:
        return None
    rows = [list(c.classes) for c in result.classifications]
    outputs = {}
    if "scores" in signature.outputs:
        outputs["scores"] = np.array([[c.score for c in row] for row in rows], np.float32)
    if "classes" in signature.outputs:
        outputs["classes"] = np.array([[c.label.encode() for c in row] for row in rows], dtype=object)
    return outputs


def _regression_outputs(result) -> dict | None:
    """`outputs` [examples] of a RegressionResult."""
    if not result.regressions:
        return None
    return {"outputs": np.array([r.value for r in result.regressions], np.float32)}


def _check_inputs(call: dict, signature: Signature, path: Path, index: int) -> None:
    missing = sorted(set(signature.inputs) - set(call))
    if missing:
        raise InputError(
            f"--inputs {path}: record {index} lacks input(s) {', '.join(missing)} "
            f"(it has: {', '.join(sorted(call)) or 'none'})"
        )


def _prediction_logs(path: Path):
    """(index, PredictionLog) of every record of a TFRecord file; InputError naming the record that is corrupt."""
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import prediction_log_pb2

    from toolkit.tfenv import import_tf

    tf = import_tf()
    records = iter(tf.data.TFRecordDataset(str(path)))
    index = 0
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except tf.errors.OpError as exc:
            reason = exc.message.strip().splitlines()[0]
            if index == 0:
                raise InputError(
                    f"--inputs {path}: neither an .npz nor a TFRecord file of PredictionLogs ({reason})"
                ) from None
            raise InputError(
                f"--inputs {path}: record {index} is corrupt ({reason}); the {index} records before "
                "it are whole: replay without this file, or copy its intact records"
            ) from None
        try:
            yield index, prediction_log_pb2.PredictionLog.FromString(record.numpy())
        except DecodeError:
            raise InputError(f"--inputs {path}: record {index} is not a PredictionLog") from None
        index += 1
