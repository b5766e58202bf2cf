"""The LiteRT (TFLite) interpreter, through a signature runner.

Integer-quantized inputs and outputs (int8/uint8/int16 with a scale) are
presented as float32 and (de)quantized here with the tensor's own scale and
zero point, so a fully quantized variant is fed and compared like the float
model it was converted from. An integer input or output without a scale (a
uint8 image input that a float model casts itself) holds raw values: it keeps
its dtype and is passed through as is.

Devices differ in which kernels run, so a file can be run under each of
LiteRT's op resolvers (`RESOLVERS`): the default with the XNNPACK delegate,
the optimized builtin kernels without it, and the reference kernels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.errors import InputError, root_cause
from toolkit.parity.runners.base import Runner, Signature, TensorSpec, shape_from_dims
from toolkit.stderr import captured_stderr

#: op resolver label -> LiteRT's OpResolverType; "auto" (XNNPACK) is what an app gets by default
RESOLVERS = {"auto": "AUTO", "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "ref": "BUILTIN_REF"}


def runtime_name(path, resolver: str = "auto") -> str:
    """`tflite:FILE` under the default resolver, `tflite:FILE[RESOLVER]` under another."""
    return f"tflite:{Path(path).name}" + ("" if resolver == "auto" else f"[{resolver}]")


class TFLiteRunner(Runner):
    """Runs signature `signature_name` of the .tflite file at `path` under op resolver `resolver`.

    With `signature_name=None` the file's only signature is used; a file with
    no signatures at all is run through its raw input/output tensors.
    """

    kind = "tflite"

    def __init__(
        self,
        path,
        signature_name: str | None = "serving_default",
        name: str | None = None,
        num_threads: int | None = None,
        resolver: str = "auto",
    ):
        if resolver not in RESOLVERS:
            raise ValueError(f"unknown op resolver {resolver!r} (one of {', '.join(RESOLVERS)})")
        self.path = Path(path)
        super().__init__(name or runtime_name(self.path, resolver))
        self.signature_name = signature_name
        self.num_threads = num_threads
        self.resolver = resolver
        self._interpreter = None
        self._runner = None
        self._inputs: dict = {}
        self._outputs: dict = {}
        self._first_call = True

    def describe(self) -> dict:
        return {
            **super().describe(),
            "source": str(self.path),
            "signature": self.signature_name,
            "resolver": self.resolver,
            "quantized_io": sorted(n for n, d in {**self._inputs, **self._outputs}.items() if _quantized(d)),
        }

    @property
    def tensor_details(self) -> tuple[dict, dict]:
        """LiteRT's raw input and output details by name (real dtypes, quantization)."""
        return self._inputs, self._outputs

    def _start(self) -> Signature:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if not self.path.is_file():
            raise InputError(f"TFLite file not found: {self.path}")
        try:
            self._interpreter = Interpreter(
                model_path=str(self.path),
                num_threads=self.num_threads,
                experimental_op_resolver_type=OpResolverType[RESOLVERS[self.resolver]],
            )
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"cannot load TFLite file {self.path}: {root_cause(exc)}") from None
        signatures = self._interpreter.get_signature_list()
        key = self.signature_name
        if signatures:
            if key is None and len(signatures) == 1:
                key = next(iter(signatures))
            if key not in signatures:
                raise InputError(
                    f"TFLite file {self.path} has no signature {key!r} (it has: {', '.join(sorted(signatures))})"
                )
            self.signature_name = key
            self._runner = self._interpreter.get_signature_runner(key)
            self._inputs = self._runner.get_input_details()
            self._outputs = self._runner.get_output_details()
        else:
            self.signature_name = None
            self._interpreter.allocate_tensors()
            self._inputs = {d["name"]: d for d in self._interpreter.get_input_details()}
            self._outputs = {d["name"]: d for d in self._interpreter.get_output_details()}
        return Signature(
            inputs={n: _spec(n, d) for n, d in sorted(self._inputs.items())},
            outputs={n: _spec(n, d) for n, d in sorted(self._outputs.items())},
        )

    def _stop(self) -> None:
        self._interpreter = self._runner = None

    def _infer(self, feed: dict) -> dict:
        feed = {name: _quantize(value, self._inputs[name]) for name, value in feed.items()}
        run = self._runner if self._runner is not None else self._invoke_raw
        try:
            if self._first_call:
                # The first call creates the XNNPACK delegate, which announces itself on stderr.
                with captured_stderr():
                    raw = run(**feed)
                self._first_call = False
            else:
                raw = run(**feed)
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"{self.name} failed to run: {root_cause(exc)}") from None
        return {name: _dequantize(np.array(value), self._outputs[name]) for name, value in raw.items()}

    def _invoke_raw(self, **feed) -> dict:
        interp = self._interpreter
        for name, value in feed.items():
            interp.resize_tensor_input(self._inputs[name]["index"], value.shape)
        interp.allocate_tensors()
        for name, value in feed.items():
            interp.set_tensor(self._inputs[name]["index"], value)
        interp.invoke()
        return {name: interp.get_tensor(d["index"]) for name, d in self._outputs.items()}


def _quantized(detail: dict) -> bool:
    """An integer tensor with a non-zero scale (without one, its values are raw)."""
    scales = detail.get("quantization_parameters", {}).get("scales", [])
    return np.dtype(detail["dtype"]).kind in "iu" and len(scales) > 0 and float(np.max(scales)) > 0


def _spec(name: str, detail: dict) -> TensorSpec:
    dtype = np.float32 if _quantized(detail) else np.dtype(detail["dtype"])
    if np.dtype(dtype).kind == "S":
        dtype = np.dtype(object)
    dims = detail.get("shape_signature")
    if dims is None or len(dims) != len(detail["shape"]):
        dims = detail["shape"]
    return TensorSpec(name, np.dtype(dtype), shape_from_dims(dims))


def _quantize(value: np.ndarray, detail: dict) -> np.ndarray:
    if not _quantized(detail):
        return value
    q = detail["quantization_parameters"]
    info = np.iinfo(detail["dtype"])
    scaled = np.round(value / q["scales"][0]) + q["zero_points"][0]
    return np.clip(scaled, info.min, info.max).astype(detail["dtype"])


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    if not _quantized(detail):
        return value
    q = detail["quantization_parameters"]
    return ((value.astype(np.float32) - q["zero_points"][0]) * q["scales"][0]).astype(np.float32)
