"""SignatureDefs of a TFLite model, built the way TF Serving's TfLiteSession does.

A model converted with TF-style SignatureDefs stored in its
`signature_defs_metadata` (a flexbuffer map of serialized SignatureDef protos)
exposes those, with tensor names matched to the model's tensors (a `:0`
suffix is dropped when only the legacy name exists). Any other model gets one
generated `serving_default` predict signature whose aliases are the input and
output tensor names without `:0`.

`embed_signature_defs` writes that metadata (as TF's tflite::SetSignatureDefMap
does), so a model keeps its own aliases when TF Serving serves it.
"""

import logging

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from flatbuffers import flexbuffers
from google.protobuf.message import DecodeError
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.tensors import data_type_of

log = logging.getLogger("serving")

_METADATA_KEY = b"signature_defs_metadata"
_FILE_IDENTIFIER = b"TFL3"
PREDICT_METHOD = "tensorflow/serving/predict"


def _legacy_name(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def stored_signature_defs(content: bytes) -> dict:
    """The SignatureDefs in a model's `signature_defs_metadata`, by name ({} when it has none).

    ValueError when that metadata is not a flexbuffer map of SignatureDefs.
    """
    model = schema.Model.GetRootAsModel(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() != _METADATA_KEY:
            continue
        try:
            data = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            stored = flexbuffers.GetRoot(data).AsMap
            return {
                key.AsKey: meta_graph_pb2.SignatureDef.FromString(value.AsStringBytes)
                for key, value in zip(stored.Keys, stored.Values)
            }
        except (AttributeError, IndexError, TypeError, ValueError, DecodeError) as exc:
            # Whatever the flexbuffer reader trips on, reported as TF Serving does.
            raise ValueError(f"Invalid SignatureDefs found in TfLite model: {exc}") from None
    return {}


def _tensor_info(detail: dict, shape_key: str = "shape") -> meta_graph_pb2.TensorInfo:
    return meta_graph_pb2.TensorInfo(
        name=detail["name"],
        dtype=data_type_of(np.empty(0, dtype=detail["dtype"])),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in detail[shape_key]]
        ),
    )


def embed_signature_defs(content: bytes) -> bytes:
    """`content` with one TF-style SignatureDef per signature runner signature in its metadata.

    Each keeps the native signature's name and aliases; its TensorInfos carry the
    TFLite tensors' names, dtypes and shapes (-1 for a dynamic dimension). The
    native signatures stay as they are for LiteRT's signature runner.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    defs = {}
    for key in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(key)
        signature = defs[key] = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
        for alias, detail in runner.get_input_details().items():
            signature.inputs[alias].CopyFrom(_tensor_info(detail, "shape_signature"))
        for alias, detail in runner.get_output_details().items():
            signature.outputs[alias].CopyFrom(_tensor_info(detail, "shape_signature"))
    fbb = flexbuffers.Builder()
    with fbb.Map():
        for key, signature in defs.items():
            fbb.Key(key)
            # A serialized proto is bytes, which Builder.String (text only) cannot take;
            # it must still be a flexbuffer STRING: tflite::GetSignatureDefMap reads AsString().
            fbb._WriteBlob(signature.SerializeToString(), append_zero=True, type_=flexbuffers.Type.STRING)
    buffer = schema.BufferT(data=np.frombuffer(bytes(fbb.Finish()), dtype=np.uint8))
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    model.metadata = model.metadata or []
    stored = [m for m in model.metadata if m.name == _METADATA_KEY]
    if stored:  # replace the old map in place rather than leave its buffer behind
        model.buffers[stored[0].buffer] = buffer
    else:
        model.buffers.append(buffer)
        model.metadata.append(schema.MetadataT(name=_METADATA_KEY, buffer=len(model.buffers) - 1))
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())


def signature_defs(content: bytes, interpreter) -> tuple[dict, dict]:
    """(signature name -> SignatureDef, tensor name -> interpreter tensor index)."""
    details = interpreter.get_input_details() + interpreter.get_output_details()
    index_of = {d["name"]: d["index"] for d in details}
    stored = stored_signature_defs(content)
    if stored:
        for signature in stored.values():
            for info in list(signature.inputs.values()) + list(signature.outputs.values()):
                if info.name not in index_of and _legacy_name(info.name) in index_of:
                    info.name = _legacy_name(info.name)
                if info.name not in index_of:
                    raise ValueError(f"signature references an unknown tensor {info.name}")
        return stored, index_of
    log.warning("No signature def found in TFLite model. Generating one.")
    generated = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    for detail in interpreter.get_input_details():
        generated.inputs[_legacy_name(detail["name"])].CopyFrom(_tensor_info(detail))
    for detail in interpreter.get_output_details():
        generated.outputs[_legacy_name(detail["name"])].CopyFrom(_tensor_info(detail))
    return {"serving_default": generated}, index_of
