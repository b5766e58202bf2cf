"""The feeds a check sends to every runtime.

A `Feed` is a named group of calls; each call is one `{input: ndarray}` dict
passed to `Runner.infer`, and every runtime receives exactly the same calls,
so batch composition (and with it bit-exactness) is identical everywhere.
Signatures with a dynamic batch dimension get one call per feed (the check
may split it under transport limits, identically for all runtimes): only the
inputs with a dynamic first dimension carry rows, the others (a scalar
temperature, a fixed-shape table) go whole with every call. Fully static
signatures get one call per sample.

Sources: the held-out split exported next to a tfkit model plus boundary and
extreme cases derived from it; values generated from the signature's dtypes
and shapes; or a user's `--inputs`: an `.npz` with one array per input
(bytes kept losslessly as `NAME.bytes` + `NAME.lengths`), or TFRecord files
of PredictionLogs (TF Serving's warmup and request-log format, replayed by
toolkit.parity.replay).
"""

from __future__ import annotations

import glob
import zipfile
from pathlib import Path

import numpy as np

from toolkit.artifacts.arrays import BYTES_SUFFIX, LENGTHS_SUFFIX, join_bytes
from toolkit.artifacts.golden import heldout_feeds
from toolkit.artifacts.layout import HELDOUT_FILE
from toolkit.errors import InputError
from toolkit.parity.feeds import Feed, Inputs
from toolkit.parity.runners.base import Signature, TensorSpec

#: integer inputs wider than 16 bits are usually ids, indices or counts
WIDE_INT_RANGE = (0, 9)
FLOAT_RANGE = (-1.0, 1.0)


class MissingInputs(InputError):
    """An inputs file holds nothing for this signature (no array of an input, no request for it)."""


def heldout_path(version_dir: Path) -> Path | None:
    """The held-out split a tfkit export keeps next to the model, if any."""
    path = Path(version_dir) / HELDOUT_FILE
    return path if path.is_file() else None


def heldout_features(version_dir: Path, signature: Signature) -> np.ndarray | None:
    """The features of the held-out split beside a tfkit export, when the signature takes them:
    one float input with a batch dimension."""
    path = heldout_path(version_dir)
    single = next(iter(signature.inputs.values())) if len(signature.inputs) == 1 else None
    if path is None or single is None or not single.batch_dynamic or np.dtype(single.dtype).kind != "f":
        return None
    with np.load(path, allow_pickle=False) as data:
        return data["features"]


# -- tfkit's own model: held-out rows plus boundary and extreme cases -----------------
def tfkit_feeds(features: np.ndarray, signature: Signature, reference) -> Inputs:
    """Held-out rows plus boundary and extreme cases for a one-input classifier like tfkit's
    (`toolkit.artifacts.golden.heldout_feeds`: the rows a tfkit export's golden file holds).

    `reference` is a started Runner; its logits (or probabilities) locate the
    decision boundary, so the cases fit whatever model was trained.
    """
    ((name, spec),) = signature.inputs.items()
    features = np.asarray(features, dtype=spec.dtype)
    if spec.shape is not None and (len(spec.shape) != 2 or spec.shape[1] not in (None, features.shape[1])):
        raise InputError(f"held-out features of shape {list(features.shape)} do not fit input {spec.describe()}")
    feeds = heldout_feeds(features, name, reference.infer)
    return Inputs("heldout+boundary", [Feed(f.name, f.calls, f.batched, f.in_distribution, (name,)) for f in feeds])


# -- generated from the signature -----------------------------------------------------
def generated_feeds(
    signature: Signature, samples: int = 64, seed: int = 0, value_range: tuple[float, float] | None = None
) -> Inputs:
    """Random values from each input's dtype and shape, plus zeros and a batch of 1.

    Each dtype gets its own range (`value_range` overrides it for every numeric
    input): floats [-1, 1]; 8- and 16-bit integers their whole range (pixels,
    audio, quantized data); wider integers [0, 9] (ids, indices, counts); bools
    both values. Inputs without a batch dimension get one value per call.
    """
    if samples < 1:
        raise InputError(f"--samples must be at least 1, got {samples}")
    if value_range is not None and not value_range[0] < value_range[1]:
        raise InputError(f"--value-range {value_range[0]:g} {value_range[1]:g}: LOW must be below HIGH")
    specs = list(signature.inputs.values())
    for spec in specs:
        _check_generatable(spec)
    ranges = {spec.name: _generated_range(spec, value_range) for spec in specs}
    rng = np.random.default_rng(seed)

    def call(rows: int, fill) -> dict:
        return {s.name: fill(s, (rows, *s.shape[1:]) if s.batch_dynamic else tuple(s.shape)) for s in specs}

    def draw(spec: TensorSpec, shape: tuple) -> np.ndarray:
        low, high = ranges[spec.name]
        if np.dtype(spec.dtype).kind == "f":
            return np.asarray(rng.uniform(low, high, shape), spec.dtype)
        return np.asarray(rng.integers(low, high, shape, endpoint=True), spec.dtype)

    def zeros(spec: TensorSpec, shape: tuple) -> np.ndarray:
        return np.zeros(shape, spec.dtype)

    rows = signature.row_inputs
    if rows:
        feeds = [
            Feed("generated", [call(samples, draw)], row_inputs=rows),
            Feed("zeros", [call(1, zeros)], row_inputs=rows),
            Feed("batch of 1", [call(1, draw)], batched=False, row_inputs=rows),
        ]
    else:
        # A fully static signature takes exactly one shape: one call per sample.
        feeds = [
            Feed("generated", [call(0, draw) for _ in range(samples)], batched=False),
            Feed("zeros", [call(0, zeros)], batched=False),
        ]
    return Inputs("generated", feeds, seed=seed, notes=[_generated_note(specs, ranges, seed)])


def _generated_range(spec: TensorSpec, value_range: tuple[float, float] | None) -> tuple:
    """The (low, high) values of one input, both included for integers."""
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "b":
        return False, True
    if dtype.kind == "f":
        return value_range or FLOAT_RANGE
    info = np.iinfo(dtype)
    if value_range is None:
        return (int(info.min), int(info.max)) if dtype.itemsize <= 2 else WIDE_INT_RANGE
    low, high = max(info.min, int(np.ceil(value_range[0]))), min(info.max, int(np.floor(value_range[1])))
    if low > high:
        raise InputError(
            f"--value-range {value_range[0]:g} {value_range[1]:g} holds no {dtype.name} value for input {spec.name}"
        )
    return low, high


def _generated_note(specs, ranges: dict, seed: int) -> str:
    """Which values each input got, and how to change them when they do not fit."""
    parts = []
    for spec in specs:
        low, high = ranges[spec.name]
        kind = np.dtype(spec.dtype).kind
        what = "False/True" if kind == "b" else f"{'uniform' if kind == 'f' else 'integers'} in [{low:g}, {high:g}]"
        parts.append(f"{spec.name} {np.dtype(spec.dtype).name} {what}")
    note = f"generated from seed {seed}: {', '.join(parts)}"
    if any(np.dtype(s.dtype).kind in "iu" for s in specs):
        note += (
            "; integer inputs are often ids or indices: if these ranges do not fit the model, "
            "pass --value-range LOW HIGH or --inputs FILE"
        )
    return note


def _check_generatable(spec: TensorSpec) -> None:
    hint = f"pass --inputs FILE (.npz with an array named {spec.name!r}, or a PredictionLog TFRecord)"
    if np.dtype(spec.dtype).kind in "SUO":
        raise InputError(
            f"input {spec.describe()} is a string tensor (e.g. serialized tf.Example) that "
            f"cannot be generated from its signature; {hint}"
        )
    if np.dtype(spec.dtype).kind not in "fiub":
        raise InputError(f"cannot generate values for input {spec.describe()}; {hint}")
    if spec.shape is None:
        raise InputError(f"input {spec.name} has an unknown rank, so no shape can be generated; {hint}")
    if any(d is None for d in (spec.shape[1:] if spec.batch_dynamic else spec.shape)):
        raise InputError(f"input {spec.describe()} has dynamic inner dimensions; {hint}")


# -- a user's file ------------------------------------------------------------------------
def file_feeds(
    patterns,
    signature: Signature,
    signature_name: str = "serving_default",
    model_name: str | None = None,
    explicit_model: bool = False,
) -> Inputs:
    """`--inputs FILE...`: one .npz (a zip file), else TFRecord files of PredictionLogs.

    `patterns`: a path or a list of paths and globs (expanded, sorted). Which
    model's logged calls are replayed: toolkit.parity.replay.read_replay
    (`explicit_model`: `model_name` came from --model-name).
    """
    paths = input_paths([patterns] if isinstance(patterns, (str, Path)) else patterns)
    archives = [p for p in paths if zipfile.is_zipfile(p)]
    if archives and len(paths) > 1:
        raise InputError(
            f"--inputs {archives[0]}: an .npz is read on its own; give it as the only --inputs, "
            "or give only PredictionLog files"
        )
    if archives:
        return npz_feeds(archives[0], signature)
    return prediction_log_feeds(paths, signature, signature_name, model_name, explicit_model)


def input_paths(patterns) -> list[Path]:
    """The files `--inputs` names: each pattern a path or a glob (sorted), without repeats."""
    paths = []
    for pattern in map(str, patterns):
        if glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
            if not found:
                raise InputError(f"--inputs {pattern}: no file matches")
        elif Path(pattern).is_file():
            found = [Path(pattern)]
        else:
            raise InputError(f"--inputs {pattern}: no such file")
        paths += [p for p in found if p not in paths]
    return paths


def npz_feeds(path, signature: Signature) -> Inputs:
    """A user's .npz with one array per input name (rows along the first axis).

    A string input may be stored losslessly as two arrays: `NAME.bytes` (uint8,
    every value's bytes concatenated in C order) and `NAME.lengths` (integers,
    the input's shape, each value's length). numpy's 'S' arrays drop trailing
    zero bytes, which cuts serialized protos such as tf.Example.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        hint = (
            (
                f"; store strings as a bytes array (dtype 'S') or as NAME{BYTES_SUFFIX} + NAME{LENGTHS_SUFFIX}, "
                "never as objects"
            )
            if "pickle" in str(exc)
            else ""
        )
        raise InputError(f"cannot read --inputs {path}: {exc}{hint}") from None
    feed, notes = {}, []
    for name, spec in signature.inputs.items():
        if name not in arrays and name + BYTES_SUFFIX in arrays and name + LENGTHS_SUFFIX in arrays:
            arrays[name] = _joined_bytes(arrays[name + BYTES_SUFFIX], arrays[name + LENGTHS_SUFFIX], path, name)
        if name in arrays:
            feed[name] = _as_input(arrays[name], spec, path, notes)
    missing = sorted(set(signature.inputs) - set(feed))
    if missing:
        raise MissingInputs(
            f"--inputs {path} lacks array(s) {', '.join(missing)} "
            f"(it has: {', '.join(sorted(arrays)) or 'none'}; the signature needs "
            f"{', '.join(s.describe() for s in signature.inputs.values())})"
        )
    rows = signature.row_inputs
    if rows:
        counts = {np.shape(feed[n])[0] if np.ndim(feed[n]) else None for n in rows}
        if len(counts) != 1 or None in counts:
            raise InputError(
                f"--inputs {path}: arrays {', '.join(rows)} must have rows along their first axis, "
                f"and as many each (they have {[list(np.shape(feed[n])) for n in rows]})"
            )
        return Inputs(f"npz:{path}", [Feed(path.name, [feed], row_inputs=rows)], notes=notes)
    calls = _sample_calls(feed, signature, path)
    return Inputs(f"npz:{path}", [Feed(path.name, calls, batched=False)], notes=notes)


def _joined_bytes(data: np.ndarray, lengths: np.ndarray, path: Path, name: str) -> np.ndarray:
    """The object array of bytes that NAME.bytes + NAME.lengths store."""
    try:
        return join_bytes(data, lengths)
    except ValueError as exc:
        raise InputError(f"--inputs {path}: {name}{BYTES_SUFFIX} + {name}{LENGTHS_SUFFIX}: {exc}") from None


def _as_input(value: np.ndarray, spec: TensorSpec, path: Path, notes: list) -> np.ndarray:
    """`value` in the input's dtype: numbers cast, text encoded, bytes as objects."""
    if np.dtype(spec.dtype) == np.dtype(object):
        if value.dtype.kind == "U":
            return np.char.encode(value, "utf-8").astype(object)
        if value.dtype.kind == "S":
            _check_zero_bytes(value, spec.name, path, notes)
            return value.astype(object)
    elif value.dtype != spec.dtype and value.dtype.kind in "fiub" and np.dtype(spec.dtype).kind in "fiub":
        return value.astype(spec.dtype)
    return value


def _check_zero_bytes(value: np.ndarray, name: str, path: Path, notes: list) -> None:
    """numpy 'S' arrays drop trailing zero bytes. Refuse an array that surely lost some
    (even its longest value is shorter than its width); note one of binary values that may have."""
    fix = (
        f"store them losslessly as {name}{BYTES_SUFFIX} (uint8, the values' bytes concatenated) + "
        f"{name}{LENGTHS_SUFFIX} (each value's length), or pass a TFRecord file of PredictionLogs"
    )
    values = value.ravel().tolist()
    longest = max(map(len, values), default=value.itemsize)
    if longest < value.itemsize:
        # Cut protos fail to parse in every runtime with an unreadable message: say why first.
        raise InputError(
            f"--inputs {path}: array {name} (dtype S{value.itemsize}, longest value {longest} "
            "bytes) lost trailing zero bytes, which numpy drops from 'S' arrays; " + fix
        )
    control = bytes(range(9)) + bytes(range(14, 32))  # bytes that plain text does not hold
    if any(len(x) < value.itemsize and any(c in control for c in x) for x in values):
        notes.append(
            f"--inputs {path}: array {name} holds binary values (e.g. serialized tf.Example) in a numpy 'S' "
            "array, which drops trailing zero bytes; if a value ended in one, " + fix
        )


def _sample_calls(feed: dict, signature: Signature, path: Path) -> list[dict]:
    """Calls of a fixed-shape signature: an array shaped like its input goes whole
    with every call; arrays with one more leading axis hold one sample per call."""
    stacked = {n for n, s in signature.inputs.items() if s.shape is not None and np.shape(feed[n]) != tuple(s.shape)}
    counts = {len(feed[n]) for n in stacked if np.ndim(feed[n])}
    if not stacked:
        return [feed]
    if len(counts) != 1 or any(np.shape(feed[n])[1:] != tuple(signature.inputs[n].shape) for n in stacked):
        raise InputError(
            f"--inputs {path}: arrays {', '.join(sorted(stacked))} fit neither their input's shape "
            "nor a stack of samples of it "
            f"(the signature needs {', '.join(s.describe() for s in signature.inputs.values())})"
        )
    return [{n: v[i] if n in stacked else v for n, v in feed.items()} for i in range(counts.pop())]


def prediction_log_feeds(
    paths, signature: Signature, signature_name: str, model_name: str | None = None, explicit_model: bool = False
) -> Inputs:
    """One call per logged request of `signature_name` in PredictionLog files (warmup files or request logs),
    one feed per file; their logged responses, when every record has one (see toolkit.parity.replay)."""
    from toolkit.parity.replay import read_replay

    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    replay = read_replay(paths, signature, signature_name, model_name, explicit_model)
    rows = signature.row_inputs
    feeds = [
        Feed(path.name, calls, batched=bool(rows), row_inputs=rows) for path, calls in replay.calls.items() if calls
    ]
    source = f"predictionlog:{paths[0]}" if len(paths) == 1 else f"predictionlog:{replay.label} ({len(paths)} files)"
    return Inputs(source, feeds, notes=replay.notes(), logged=replay.recorded(), logged_from=replay.label)


def literal_feed(signature: Signature, json_text: str | None = None, csv_text: str | None = None) -> dict:
    """A feed from a JSON literal ({"input": [[...]]} or, for one input, [[...]])
    or a CSV literal (rows separated by ';' or newlines, values by ',')."""
    specs = signature.inputs
    if json_text is not None:
        import json

        try:
            value = json.loads(json_text)
        except ValueError as exc:
            raise InputError(f"--json: not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            if len(specs) != 1:
                raise InputError(
                    f'--json: the signature has inputs {", ".join(specs)}; pass an object {{"name": values, ...}}'
                )
            value = {next(iter(specs)): value}
        raw = value
    else:
        if len(specs) != 1:
            raise InputError(f"--csv feeds a single input, but the signature has {', '.join(specs)}; use --json")
        rows = [r for r in csv_text.replace(";", "\n").splitlines() if r.strip()]
        try:
            raw = {next(iter(specs)): [[float(x) for x in r.split(",")] for r in rows]}
        except ValueError as exc:
            raise InputError(f"--csv: {exc}") from None
    unknown = sorted(set(raw) - set(specs))
    if unknown:
        raise InputError(f"unknown input(s) {', '.join(unknown)}; the signature has {', '.join(specs)}")
    feed = {}
    for name, values in raw.items():
        spec = specs[name]
        if np.dtype(spec.dtype) == np.dtype(object):
            feed[name] = np.array(
                [v.encode() if isinstance(v, str) else v for v in np.ravel(values)], dtype=object
            ).reshape(np.shape(values))
        else:
            try:
                feed[name] = np.asarray(values, dtype=spec.dtype)
            except (TypeError, ValueError) as exc:
                raise InputError(f"input {name}: cannot make {np.dtype(spec.dtype).name} values ({exc})") from None
    return feed
