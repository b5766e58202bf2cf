"""What a TFLite flatbuffer holds, read with LiteRT's schema alone (no interpreter, no TensorFlow):
the ops it uses, whether any needs the Flex delegate, its tensor types and quantization kind.

numpy and ai-edge-litert only: the device checker (toolkit.edge) reads files through it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from toolkit.errors import InputError

#: integer weight types that, with a scale, mean quantized weights
_INTEGER_WEIGHTS = {"INT4", "INT8", "UINT8"}


def tflite_facts(path) -> dict:
    """Ops, Flex need, tensor types and quantization kind, read from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read TFLite file {path}: {exc.strerror}") from None
    if buf[4:8] != b"TFL3":
        raise InputError(f"{path} is not a TFLite model (no TFL3 flatbuffer identifier)")
    try:
        model = schema.Model.GetRootAs(buf, 0)
        codes = [_op_name(model.OperatorCodes(i), schema) for i in range(model.OperatorCodesLength())]
        ops: dict[str, int] = {}
        tensors = set()
        for g in range(model.SubgraphsLength()):
            graph = model.Subgraphs(g)
            for j in range(graph.OperatorsLength()):
                name = codes[graph.Operators(j).OpcodeIndex()]
                ops[name] = ops.get(name, 0) + 1
            tensors |= {_tensor_kind(model, graph.Tensors(k), schema) for k in range(graph.TensorsLength())}
        signatures = [model.SignatureDefs(i).SignatureKey().decode() for i in range(model.SignatureDefsLength())]
    except Exception as exc:  # a corrupt flatbuffer raises anything from struct to IndexError
        raise InputError(f"cannot read TFLite file {path}: {exc}") from None
    flex = sorted(op for op in ops if op.startswith("Flex"))
    return {
        "file": str(path),
        "size_bytes": len(buf),
        "signatures": signatures,
        "ops": dict(sorted(ops.items())),
        "flex_ops": flex,
        "needs_flex": bool(flex),
        "quantization": quantization_kind(tensors),
        "tensor_types": sorted({kind for kind, _, _ in tensors}),
    }


@cache
def _names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _op_name(code, schema) -> str:
    number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = _names(schema.BuiltinOperator).get(number, str(number))
    return code.CustomCode().decode() if name == "CUSTOM" and code.CustomCode() else name


def _tensor_kind(model, tensor, schema) -> tuple[str, bool, bool]:
    """(type name, constant, quantized): constant when its buffer holds data (a
    weight), quantized when it carries a non-zero scale."""
    buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() < model.BuffersLength() else None
    constant = buffer is not None and (buffer.DataLength() > 0 or buffer.Size() > 0)
    q = tensor.Quantization()
    quantized = q is not None and q.ScaleLength() > 0 and bool((q.ScaleAsNumpy() != 0).any())
    return _names(schema.TensorType).get(tensor.Type(), "?"), constant, quantized


def quantization_kind(tensors: set[tuple[str, bool, bool]]) -> str:
    """How a file computes, from its tensors' (type, constant, quantized):
    int16x8 / int8 (activations quantized: integer math), dynamic (quantized
    integer weights, float math), float16 (float16 weights) or float32.
    An integer tensor without a scale (a uint8 image input, int32 indices)
    holds raw values and says nothing about quantization."""
    activations = {kind for kind, constant, quantized in tensors if quantized and not constant}
    if "INT16" in activations:
        return "int16x8"
    if activations & {"INT8", "UINT8"}:
        return "int8"
    if any(constant and quantized and kind in _INTEGER_WEIGHTS for kind, constant, quantized in tensors):
        return "dynamic"
    if any(constant and kind == "FLOAT16" for kind, constant, _ in tensors):
        return "float16"
    return "float32"
