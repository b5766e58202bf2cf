"""TensorFlow protos <-> numpy: tensors, dtypes and SignatureDefs.

Shared by the runners that talk to TF Serving (gRPC metadata and Predict) and
by the signature-consistency check. Imports TensorFlow, so import this module
only from code that already needs it.
"""

from __future__ import annotations

import numpy as np

from toolkit.parity.runners.base import DEFAULT_TAGS, Signature, TensorSpec, shape_from_dims
from toolkit.tfenv import import_tf


def numpy_dtype(dtype_enum: int) -> np.dtype:
    """The numpy dtype of a `DataType` enum value (DT_STRING -> object)."""
    return np.dtype(import_tf().dtypes.as_dtype(dtype_enum).as_numpy_dtype)


def spec_from_tensor_info(name: str, info) -> TensorSpec:
    """A TensorSpec from a `TensorInfo` proto (one entry of a SignatureDef)."""
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else shape_from_dims(d.size for d in shape.dim)
    return TensorSpec(name, numpy_dtype(info.dtype), dims)


def signature_from_def(signature_def) -> Signature:
    """A Signature from a `SignatureDef` proto."""
    return Signature(
        inputs={k: spec_from_tensor_info(k, v) for k, v in sorted(signature_def.inputs.items())},
        outputs={k: spec_from_tensor_info(k, v) for k, v in sorted(signature_def.outputs.items())},
        extra={"method_name": signature_def.method_name},
    )


def saved_model_signature(version_dir, signature_name: str, tags=DEFAULT_TAGS) -> Signature | None:
    """The SignatureDef stored in saved_model.pb for the MetaGraph tagged exactly `tags`, or None."""
    for meta_graph in _meta_graphs(version_dir):
        if set(meta_graph.meta_info_def.tags) == set(tags) and signature_name in meta_graph.signature_def:
            return signature_from_def(meta_graph.signature_def[signature_name])
    return None


def tag_sets(version_dir) -> list[tuple[str, ...]]:
    """The tag-set of every MetaGraph in saved_model.pb (empty without one)."""
    return [tuple(sorted(m.meta_info_def.tags)) for m in _meta_graphs(version_dir)]


def _meta_graphs(version_dir) -> list:
    from pathlib import Path

    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(version_dir) / "saved_model.pb"
    if not path.is_file():
        return []
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(path.read_bytes())
    except DecodeError:
        return []  # a corrupt file: loading it reports the error
    return list(saved.meta_graphs)


def spec_from_tf(name: str, spec) -> TensorSpec:
    """A TensorSpec from a `tf.TensorSpec`."""
    dims = None if spec.shape.rank is None else tuple(spec.shape.as_list())
    return TensorSpec(name, np.dtype(spec.dtype.as_numpy_dtype), dims)


def to_tensor_proto(value: np.ndarray):
    """A `TensorProto` carrying `value` bit for bit (tensor_content for numbers)."""
    if value.dtype.kind == "U":
        value = np.char.encode(value, "utf-8")
    return import_tf().make_tensor_proto(value)


def from_tensor_proto(proto) -> np.ndarray:
    """The numpy array a `TensorProto` carries."""
    return import_tf().make_ndarray(proto)
