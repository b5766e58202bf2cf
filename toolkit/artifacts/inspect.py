"""What is inside a SavedModel or a TFLite flatbuffer, as plain dicts and as text.

SavedModel: read straight from saved_model.pb (no graph is loaded), reported
like `saved_model_cli show --all`: tag-sets, then each signature's inputs and
outputs with dtype, shape and tensor name, and its method name. The internal
`__saved_model_init_op` is not a signature and is left out. TFLite: the
LiteRT interpreter's signature list and tensor details, with quantization
parameters (scale, zero point) per tensor, and the TF SignatureDefs stored in
its `signature_defs_metadata` (what TF Serving's --prefer_tflite_model serves);
from the flatbuffer itself, the ops it uses, whether it needs the Flex
delegate, and its quantization kind (`toolkit.artifacts.flatbuffer.tflite_facts`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolkit.artifacts.flatbuffer import tflite_facts
from toolkit.artifacts.layout import version_folders
from toolkit.errors import InputError, root_cause
from toolkit.tfenv import import_tf

INIT_OP_KEY = "__saved_model_init_op"


def inspect_path(path: str | Path, tags=None) -> dict:
    """Describe a SavedModel folder (plus any *.tflite beside it) or a .tflite file.

    `tags`: describe only the SavedModel MetaGraph with this tag-set (default: all).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix != ".tflite":
            raise InputError(f"{path}: not a SavedModel folder or a .tflite file")
        return {"path": str(path), "tflite": [tflite_info(path)]}
    tflite_files = sorted(path.glob("*.tflite"))
    if not (path / "saved_model.pb").is_file():
        if tflite_files:  # a TFLite-only version, as TF Serving serves with --prefer_tflite_model
            return {"path": str(path), "tflite": [tflite_info(p) for p in tflite_files]}
        versions = list(version_folders(path).values())
        hint = (
            f"; it holds versions {', '.join(p.name for p in versions)} (inspect one of them, e.g. {versions[-1]})"
            if versions
            else ""
        )
        raise InputError(f"{path}: no saved_model.pb or .tflite file in this folder{hint}")
    return {
        "path": str(path),
        "saved_model": saved_model_info(path, tags),
        "tflite": [tflite_info(p) for p in tflite_files],
    }


def saved_model_info(model_dir: str | Path, tags=None) -> dict:
    """{'meta_graphs': [{'tags': [...], 'signatures': {name: {...}}}]} from saved_model.pb,
    only the MetaGraph tagged exactly `tags` if given."""
    import_tf()  # the protos import TensorFlow; import_tf() does it first, hiding its start-up banner
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = Path(model_dir) / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(pb_path.read_bytes())
    except (DecodeError, OSError) as exc:
        raise InputError(f"{pb_path}: not a readable SavedModel ({exc})") from None
    if not proto.meta_graphs:
        raise InputError(f"{pb_path}: the SavedModel holds no MetaGraphDef")

    meta_graphs = []
    for meta_graph in proto.meta_graphs:
        signatures = {
            key: _signature_def_info(sig) for key, sig in sorted(meta_graph.signature_def.items()) if key != INIT_OP_KEY
        }
        meta_graphs.append({"tags": sorted(meta_graph.meta_info_def.tags), "signatures": signatures})
    if tags is not None:
        chosen = [m for m in meta_graphs if set(m["tags"]) == {t.strip() for t in tags if t.strip()}]
        if not chosen:
            raise InputError(
                f"{pb_path}: no MetaGraph tagged {','.join(tags)} (it has tag-sets: "
                f"{'; '.join(','.join(m['tags']) for m in meta_graphs)}); pass --tags with one of them"
            )
        meta_graphs = chosen
    return {"meta_graphs": meta_graphs}


def _signature_def_info(sig) -> dict:
    """A SignatureDef proto as {'method_name', 'inputs': {alias: {dtype, shape, name}}, 'outputs'}."""
    from tensorflow.core.framework import types_pb2

    def tensor(info):
        shape = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
        return {"dtype": types_pb2.DataType.Name(info.dtype), "shape": shape, "name": info.name}

    return {
        "method_name": sig.method_name,
        "inputs": {k: tensor(v) for k, v in sorted(sig.inputs.items())},
        "outputs": {k: tensor(v) for k, v in sorted(sig.outputs.items())},
    }


def tflite_info(path: str | Path) -> dict:
    """Signatures of a .tflite file with each input/output's dtype, shape and quantization,
    and the TF SignatureDefs TF Serving reads from its `signature_defs_metadata`."""
    import_tf()  # as in saved_model_info
    from ai_edge_litert.interpreter import Interpreter

    from serving.tflite_signatures import stored_signature_defs

    path = Path(path)
    try:
        interpreter = Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a readable TFLite model ({root_cause(exc)})") from None

    def tensor(details):
        scale, zero_point = details["quantization"]
        params = details.get("quantization_parameters", {})
        return {
            "tensor": details["name"],
            "index": int(details["index"]),
            "dtype": np.dtype(details["dtype"]).name,
            "shape": [int(d) for d in details.get("shape_signature", details["shape"])],
            "quantization": {
                "scale": float(scale),
                "zero_point": int(zero_point),
                "scales": [float(s) for s in params.get("scales", [])],
                "zero_points": [int(z) for z in params.get("zero_points", [])],
                "quantized_dimension": int(params.get("quantized_dimension", 0)),
            },
        }

    try:
        stored = stored_signature_defs(path.read_bytes())
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    signatures = {}
    for key in sorted(interpreter.get_signature_list()):
        runner = interpreter.get_signature_runner(key)
        signatures[key] = {
            "inputs": {k: tensor(v) for k, v in sorted(runner.get_input_details().items())},
            "outputs": {k: tensor(v) for k, v in sorted(runner.get_output_details().items())},
        }
    facts = tflite_facts(path)
    return {
        "path": str(path),
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "quantization": facts["quantization"],
        "ops": facts["ops"],
        "flex_ops": facts["flex_ops"],
        "needs_flex": facts["needs_flex"],
        "signatures": signatures,
        "signature_defs": {key: _signature_def_info(sig) for key, sig in sorted(stored.items())},
        "inputs": [tensor(d) for d in interpreter.get_input_details()],
        "outputs": [tensor(d) for d in interpreter.get_output_details()],
    }


def to_json(info: dict) -> str:
    return json.dumps(info, indent=2)


def to_text(info: dict) -> str:
    """Human-readable report; the SavedModel part follows `saved_model_cli show --all`."""
    lines = []
    for meta_graph in info.get("saved_model", {}).get("meta_graphs", []):
        tags = ", ".join(meta_graph["tags"])
        lines.append(f"MetaGraphDef with tag-set: '{tags}' contains the following SignatureDefs:")
        for key, sig in meta_graph["signatures"].items():
            lines += ["", f"signature_def['{key}']:"]
            for kind in ("inputs", "outputs"):
                noun = "input(s)" if kind == "inputs" else "output(s)"
                lines.append(f"  The given SavedModel SignatureDef contains the following {noun}:")
                for name, t in sig[kind].items():
                    lines += [
                        f"    {kind}['{name}'] tensor_info:",
                        f"        dtype: {t['dtype']}",
                        f"        shape: {_shape_text(t['shape'])}",
                        f"        name: {t['name']}",
                    ]
            lines.append(f"  Method name is: {sig['method_name']}")
        lines.append("")
    for lite in info.get("tflite", []):
        lines.append(f"TFLite model {lite['path']} ({lite['size_bytes']} bytes, {lite['quantization']}):")
        if lite["needs_flex"]:
            lines.append(
                f"  needs the Flex delegate (select TF ops) for {', '.join(lite['flex_ops'])}: "
                "LiteRT and most edge runtimes cannot run it without that delegate"
            )
        if lite["signatures"]:
            for key, sig in lite["signatures"].items():
                lines.append(f"  signature '{key}':")
                for kind in ("inputs", "outputs"):
                    lines += [_tflite_tensor_line(kind, name, t) for name, t in sig[kind].items()]
        else:
            lines.append("  no signatures; model inputs and outputs:")
            for kind in ("inputs", "outputs"):
                lines += [_tflite_tensor_line(kind, t["tensor"], t) for t in lite[kind]]
        if lite["signature_defs"]:
            lines.append("  TF Serving SignatureDefs (signature_defs_metadata):")
            for key, sig in lite["signature_defs"].items():
                lines.append(f"    signature_def['{key}'] ({sig['method_name']}):")
                for kind in ("inputs", "outputs"):
                    lines += [
                        f"      {kind[:-1]:6} {name}: {t['dtype']} {_shape_text(t['shape'])} (tensor '{t['name']}')"
                        for name, t in sig[kind].items()
                    ]
        else:
            lines.append(
                "  no TF Serving SignatureDefs (signature_defs_metadata): with --prefer_tflite_model,"
                " TF Serving generates serving_default with tensor names as aliases"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _shape_text(shape: list | None) -> str:
    return "unknown_rank" if shape is None else "(" + ", ".join(map(str, shape)) + ")"


def _tflite_tensor_line(kind: str, name: str, t: dict) -> str:
    q = t["quantization"]
    quant = f"scale={q['scale']:g} zero_point={q['zero_point']}" if q["scale"] else "not quantized"
    return f"    {kind[:-1]:6} {name}: {t['dtype']} {t['shape']} (tensor '{t['tensor']}', {quant})"
