"""Edge readiness of a TFLite file: what an edge team needs before shipping it.

File size, the ops it uses (and whether any needs the Flex / select-TF-ops
delegate that edge runtimes usually lack), its quantization kind, input and
output dtypes with quantization parameters, and latency per row measured in
the LiteRT interpreter.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from toolkit.errors import InputError


def _names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def model_facts(path) -> dict:
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
        n_codes = model.OperatorCodesLength()
    except Exception as exc:  # a corrupt flatbuffer raises anything from struct to IndexError
        raise InputError(f"cannot read TFLite file {path}: {exc}") from None
    builtin = _names(schema.BuiltinOperator)
    tensor_types = _names(schema.TensorType)
    codes = []
    for i in range(n_codes):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = builtin.get(code, str(code))
        if name == "CUSTOM" and oc.CustomCode():
            name = oc.CustomCode().decode()
        codes.append(name)
    ops: dict[str, int] = {}
    constant_types, activation_types = set(), set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for j in range(graph.OperatorsLength()):
            name = codes[graph.Operators(j).OpcodeIndex()]
            ops[name] = ops.get(name, 0) + 1
        for k in range(graph.TensorsLength()):
            tensor = graph.Tensors(k)
            buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() < model.BuffersLength() else None
            constant = buffer is not None and (buffer.DataLength() > 0 or buffer.Size() > 0)
            (constant_types if constant else activation_types).add(tensor_types.get(tensor.Type(), "?"))
    flex = sorted(op for op in ops if op.startswith("Flex"))
    signatures = [model.SignatureDefs(i).SignatureKey().decode() for i in range(model.SignatureDefsLength())]
    return {
        "file": str(path),
        "size_bytes": len(buf),
        "signatures": signatures,
        "ops": dict(sorted(ops.items())),
        "flex_ops": flex,
        "needs_flex": bool(flex),
        "quantization": _quantization_kind(constant_types, activation_types),
        "tensor_types": sorted(constant_types | activation_types),
    }


def _quantization_kind(constant_types: set, activation_types: set) -> str:
    """float32, float16 (weights), dynamic (int8 weights, float math) or int8 (integer math)."""
    if activation_types & {"INT8", "UINT8", "INT16"}:
        return "int8"
    if constant_types & {"INT8", "UINT8"}:
        return "dynamic"
    if "FLOAT16" in constant_types:
        return "float16"
    return "float32"


def io_details(runner) -> dict:
    """Input/output dtypes, shapes and quantization parameters of a started TFLiteRunner."""
    def describe(details: dict) -> list[dict]:
        out = []
        for name, d in sorted(details.items()):
            q = d.get("quantization_parameters", {})
            scales = [float(s) for s in q.get("scales", [])]
            out.append({"name": name, "dtype": np.dtype(d["dtype"]).name,
                        "shape": [int(x) for x in d.get("shape_signature", d["shape"])],
                        "quantization": {"scales": scales, "zero_points": [int(z) for z in q.get("zero_points", [])]}
                        if scales else None})
        return out

    inputs, outputs = runner.tensor_details
    return {"inputs": describe(inputs), "outputs": describe(outputs)}


def latency(runner, feed: dict, repeats: int = 5) -> dict:
    """Best-of-`repeats` wall time of one call with `feed` and of a one-row call, per row."""
    rows = len(next(iter(feed.values())))

    def best(f) -> float:
        runner.infer(f)  # the first call allocates tensors for this shape
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            runner.infer(f)
            times.append(time.perf_counter() - start)
        return min(times)

    batch = best(feed)
    if not runner.signature.batch_dynamic:
        # A fixed-shape signature has no batch: one call is one row.
        return {"batch_rows": 1, "us_per_row_batched": batch * 1e6, "us_single_row": batch * 1e6}
    single = best({k: v[:1] for k, v in feed.items()})
    return {"batch_rows": rows, "us_per_row_batched": batch / max(rows, 1) * 1e6, "us_single_row": single * 1e6}


def edge_report(runner, feed: dict | None) -> dict:
    """Everything above for one started TFLiteRunner; latency needs a batchable feed."""
    facts = model_facts(runner.path)
    facts.update(io_details(runner))
    facts["latency"] = latency(runner, feed) if feed is not None else None
    return facts
