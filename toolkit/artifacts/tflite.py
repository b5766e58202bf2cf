"""TFLite conversion, in one place: the variants `tfkit export` writes and the
on-the-fly conversion `tfkit check` makes when a version has no .tflite file.

`convert` wraps `tf.lite.TFLiteConverter.from_saved_model`. The converter's
native log (MLIR dumps, calibration progress) is captured; on failure its
diagnostics become one `ConversionError` that names the root cause. A TF1
graph (reference variables, which the converter cannot lift) is converted
through a TF2 copy of its signatures with the variables frozen to constants.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from toolkit.errors import InputError, root_cause
from toolkit.tfenv import captured_stderr, import_tf

QUANTIZATIONS = ("dynamic", "float16", "int8")
TFLITE_FLOAT = "model.tflite"


def tflite_filename(quantization: str | None) -> str:
    """model.tflite for float32, model_<quantization>.tflite for a variant."""
    return TFLITE_FLOAT if quantization is None else f"model_{quantization}.tflite"


def parse_quantize(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """'dynamic,int8' -> ('dynamic', 'int8'), rejecting unknown names."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    unknown = [n for n in names if n not in QUANTIZATIONS]
    if unknown:
        raise InputError(f"--quantize: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(QUANTIZATIONS)}")
    return names


#: MLIR element types no TFLite builtin kernel takes, with the dtype users know them by
UNSUPPORTED_TYPES = {
    "f64": "float64",
    "f16": "float16",
    "bf16": "bfloat16",
    "complex<f32>": "complex64",
    "complex<f64>": "complex128",
}
_TENSOR_TYPE = re.compile(r"tensor<(?:[\d?]+x)*([^<>]+(?:<[^<>]+>)?)>")


class ConversionError(InputError):
    """The TFLite converter could not convert a SavedModel; `cause` is the converter's reason alone,
    `flex_ops` the TF Select ops that would make it convert (empty when Flex would not be enough)."""

    def __init__(self, message: str, cause: str, flex_ops: tuple[str, ...] = ()):
        super().__init__(message)
        self.cause = cause
        self.flex_ops = flex_ops


def convert(
    saved_model_dir: str | Path,
    signature_keys: list[str],
    quantization: str | None = None,
    representative_dataset: Callable | None = None,
    tags: Iterable[str] = ("serve",),
    allow_flex: bool = False,
) -> bytes:
    """Convert signatures of the MetaGraph tagged `tags` of a SavedModel to a TFLite flatbuffer.

    `quantization`: None (float32), "dynamic", "float16" or "int8" (full
    integer, int8 input and output, calibrated on `representative_dataset`;
    with several signatures it yields `(signature_key, {input: array})`).
    `allow_flex`: let ops without a builtin kernel become TF Select (Flex) ops,
    which only runs where the Flex delegate is linked in.
    Raises ConversionError with the converter's root cause.
    """
    tf = import_tf()
    if quantization == "int8" and representative_dataset is None:
        raise InputError("int8 quantization needs calibration samples (a representative dataset)")
    failure, log = None, []
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(_convertible(saved_model_dir, signature_keys, tags))
        converter = tf.lite.TFLiteConverter.from_saved_model(str(source), signature_keys=signature_keys, tags=set(tags))
        _configure(converter, quantization, representative_dataset, allow_flex)
        log = stack.enter_context(captured_stderr())
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore", UserWarning)  # the converter warns about tf.lite.Interpreter
        try:
            return converter.convert()
        except Exception as exc:  # ConverterError and friends
            failure = exc
    # The exception holds the converter's diagnostics; the captured log repeats them (or is all there is).
    text = str(failure) if str(failure).strip() else "".join(log)
    cause = conversion_cause(text) or type(failure).__name__
    raise ConversionError(
        f"cannot convert {saved_model_dir} signature(s) {', '.join(map(repr, signature_keys))} to TFLite: {cause}",
        cause,
        flex_only_ops(text),
    )


def _configure(converter, quantization: str | None, representative_dataset, allow_flex: bool) -> None:
    tf = import_tf()
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.representative_dataset = representative_dataset
        builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    converter.target_spec.supported_ops = [builtins, tf.lite.OpsSet.SELECT_TF_OPS] if allow_flex else [builtins]


@contextlib.contextmanager
def _convertible(saved_model_dir, signature_keys: list[str], tags):
    """The SavedModel itself, or for a TF1 graph a temporary TF2 copy of its signatures with frozen variables."""
    from toolkit.artifacts import saved_model

    if not saved_model.is_tf1(saved_model_dir, tags):
        yield saved_model_dir
        return
    with tempfile.TemporaryDirectory(prefix="tfkit-tf1-") as frozen:
        _freeze_tf1(saved_model_dir, signature_keys, tags, frozen)
        yield frozen


def _freeze_tf1(saved_model_dir, signature_keys: list[str], tags, out: str) -> None:
    """Save each TF1 signature as a TF2 signature computing the same with its variables as constants,
    keeping input and output aliases (matched through the SignatureDef's tensor names)."""
    # TFLite's own converters freeze this way; TF has no public TF2 API for it.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from toolkit.artifacts import saved_model

    tf = import_tf()
    graph = saved_model.meta_graph(saved_model.read(saved_model_dir), tags, saved_model_dir)
    try:
        loaded = tf.saved_model.load(str(saved_model_dir), tags=list(tags))
        signatures = {
            key: _frozen_signature(loaded.signatures[key], graph.signature_def[key], convert_variables_to_constants_v2)
            for key in signature_keys
        }
    except Exception as exc:  # TF raises many types for graphs it cannot load or freeze
        cause = root_cause(exc)
        raise ConversionError(f"cannot freeze the TF1 graph of {saved_model_dir} for TFLite: {cause}", cause) from None
    tf.saved_model.save(tf.Module(), out, signatures=signatures)


def _frozen_signature(function, signature_def, freeze):
    """A concrete TF2 function: `function` with its variables frozen, named inputs and named outputs."""
    tf = import_tf()
    frozen = freeze(function)
    input_alias = {info.name: alias for alias, info in signature_def.inputs.items()}
    output_alias = {info.name: alias for alias, info in signature_def.outputs.items()}
    specs = [tf.TensorSpec(t.shape, t.dtype, name=input_alias[t.name]) for t in frozen.inputs]
    names = [output_alias[t.name] for t in frozen.outputs]

    def call(*args):
        return dict(zip(names, tf.nest.flatten(frozen(*args)), strict=True))

    return tf.function(call, input_signature=specs).get_concrete_function()


def conversion_cause(text: str) -> str:
    """The converter's reason for failing, as one line a user can act on.

    Ops the converter lists as TF Select or custom ops are named, and when they
    compute in a dtype TFLite's builtin kernels lack (float64, float16, ...) that
    dtype is the cause, not the ops. Otherwise the first error is the root cause.
    """
    select, custom = _listed_ops(text, "TF Select ops:"), _listed_ops(text, "Custom ops:")
    if not select and not custom:
        errors = root_cause(text).split("; ")
        cause = errors[0]
        if any("Select TF ops" in e for e in errors[1:]):
            cause += " (the converter would need TF Select (Flex) ops, which LiteRT lacks)"
        return cause
    by_dtype = _ops_by_unsupported_dtype(text, select + custom)
    typed = {op for ops in by_dtype.values() for op in ops}
    parts = [
        f"it computes in {dtype} ({_ops(ops)}), which TFLite's builtin ops do not support"
        for dtype, ops in by_dtype.items()
    ]
    flex, missing = [op for op in select if op not in typed], [op for op in custom if op not in typed]
    if flex:
        parts.append(f"it needs TF Select (Flex) {_ops(flex)}, which LiteRT lacks")
    if missing:
        parts.append(
            f"{_ops(missing)} {'has' if len(missing) == 1 else 'have'} no TFLite kernel, neither builtin nor Flex"
        )
    return "; ".join(parts)


def flex_only_ops(text: str) -> tuple[str, ...]:
    """The TF Select ops the converter listed, when Flex is all it lacks (no custom op, no unsupported dtype)."""
    select, custom = _listed_ops(text, "TF Select ops:"), _listed_ops(text, "Custom ops:")
    if custom or _ops_by_unsupported_dtype(text, select):
        return ()
    return tuple(select)


def _ops_by_unsupported_dtype(text: str, ops: list[str]) -> dict[str, list[str]]:
    """{dtype: ops} for the `ops` that compute in a dtype TFLite's builtin kernels lack."""
    types = _op_types(text)
    by_dtype: dict[str, list[str]] = {}
    for op in ops:
        for mlir_type, dtype in UNSUPPORTED_TYPES.items():
            if mlir_type in types.get(op, ()):
                by_dtype.setdefault(dtype, []).append(op)
    return by_dtype


def _ops(names: list[str]) -> str:
    return ("op " if len(names) == 1 else "ops ") + ", ".join(names)


def _listed_ops(text: str, label: str) -> list[str]:
    """Op names on the converter's "TF Select ops: A, B" / "Custom ops: C" line."""
    for line in text.splitlines():
        if line.strip().startswith(label):
            return [op.strip() for op in line.split(":", 1)[1].split(",") if op.strip()]
    return []


def _op_types(text: str) -> dict[str, set[str]]:
    """Element types of each op in the converter's "Details:" rows (`tf.Sin(tensor<?x4xf64>) -> ...`)."""
    types: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = re.match(r"\s+tf\.(\w+)\((.*)", line)
        if match:
            types.setdefault(match.group(1), set()).update(_TENSOR_TYPE.findall(match.group(2).split(" : ")[0]))
    return types
