"""TFLite conversion, in one place: the variants `tfkit export` writes and the
on-the-fly conversion `tfkit check` makes when a version has no .tflite file.

`convert` wraps `tf.lite.TFLiteConverter.from_saved_model`. The converter's
native log (MLIR dumps, calibration progress) is captured; on failure its
error lines become one `InputError` that names the cause.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Iterable

from toolkit.errors import InputError
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


def convert(
    saved_model_dir: str | Path,
    signature_keys: list[str],
    quantization: str | None = None,
    representative_dataset: Callable | None = None,
) -> bytes:
    """Convert signatures of a SavedModel to a TFLite flatbuffer.

    `quantization`: None (float32), "dynamic", "float16" or "int8" (full
    integer, int8 input and output, calibrated on `representative_dataset`).
    """
    tf = import_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=signature_keys)
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if representative_dataset is None:
            raise InputError("int8 quantization needs calibration samples (a representative dataset)")
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    failure = None
    with captured_stderr() as log, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the converter warns about tf.lite.Interpreter
        try:
            return converter.convert()
        except Exception as exc:  # ConverterError and friends
            failure = exc
    raise InputError(
        f"cannot convert {saved_model_dir} signature(s) {', '.join(map(repr, signature_keys))} to TFLite: "
        f"{_conversion_cause(failure, log)}; pass --tflite FILE or --no-convert"
    )


def _conversion_cause(failure: BaseException, log: list[str]) -> str:
    """The converter's reason for failing, from its exception and captured log."""
    text = (str(failure) + "\n" + "".join(log)).splitlines()
    flex = [line.split(":", 1)[1].strip() for line in text if line.strip().startswith("TF Select ops:")]
    errors = [line.strip() for line in text if "error" in line.lower()]
    if flex:
        return f"it needs TF Select (Flex) ops {flex[0]}, which LiteRT lacks"
    return (errors[0] if errors else type(failure).__name__)[:300]
