"""SignatureDefs of a TFLite model, built the way TF Serving's TfLiteSession does.

A model converted with TF-style SignatureDefs stored in its
`signature_defs_metadata` (a flexbuffer map of serialized SignatureDef protos)
exposes those, with tensor names matched to the model's tensors (a `:0`
suffix is dropped when only the legacy name exists). Any other model gets one
generated `serving_default` predict signature whose aliases are the input and
output tensor names without `:0`.
"""

from ai_edge_litert import schema_py_generated as schema
from flatbuffers import flexbuffers
import logging

import numpy as np
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.tensors import data_type_of

log = logging.getLogger("serving")

_METADATA_KEY = b"signature_defs_metadata"
PREDICT_METHOD = "tensorflow/serving/predict"


def _legacy_name(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _stored_signature_defs(content: bytes) -> dict:
    model = schema.Model.GetRootAsModel(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() != _METADATA_KEY:
            continue
        data = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
        stored = flexbuffers.GetRoot(data).AsMap
        return {key.AsKey: meta_graph_pb2.SignatureDef.FromString(value.AsStringBytes)
                for key, value in zip(stored.Keys, stored.Values)}
    return {}


def _tensor_info(detail: dict) -> meta_graph_pb2.TensorInfo:
    return meta_graph_pb2.TensorInfo(
        name=detail["name"], dtype=data_type_of(np.empty(0, dtype=detail["dtype"])),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in detail["shape"]]))


def signature_defs(content: bytes, interpreter) -> tuple[dict, dict]:
    """(signature name -> SignatureDef, tensor name -> interpreter tensor index)."""
    details = interpreter.get_input_details() + interpreter.get_output_details()
    index_of = {d["name"]: d["index"] for d in details}
    stored = _stored_signature_defs(content)
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
