"""TensorProto <-> numpy conversion, the server's hot path.

Decoding accepts every encoding a client may send: `tensor_content` bytes and
the typed `*_val` fields, with TensorFlow's `Tensor::FromProto` rules (an empty
value list means zeros, a short list is padded with its last value, a longer
one is an error). Encoding follows `Tensor::AsProtoField` (typed fields, the
default) or `Tensor::AsProtoTensorContent`. Everything goes through numpy
buffers; float/double fields are written as packed wire bytes in one call.
"""

import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

DT = types_pb2

# DataType -> (numpy dtype, TensorProto field holding typed values).
_CODECS = {
    DT.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    DT.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    DT.DT_INT32: (np.dtype(np.int32), "int_val"),
    DT.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    DT.DT_INT16: (np.dtype(np.int16), "int_val"),
    DT.DT_INT8: (np.dtype(np.int8), "int_val"),
    DT.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    DT.DT_INT64: (np.dtype(np.int64), "int64_val"),
    DT.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    DT.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    DT.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    DT.DT_HALF: (np.dtype(np.float16), "half_val"),
    DT.DT_COMPLEX64: (np.dtype(np.complex64), "scomplex_val"),
    DT.DT_COMPLEX128: (np.dtype(np.complex128), "dcomplex_val"),
    DT.DT_STRING: (np.dtype(object), "string_val"),
}

# TensorFlow's DataTypeString names, used verbatim in TF Serving's messages.
_TF_NAMES = {
    DT.DT_FLOAT: "float",
    DT.DT_DOUBLE: "double",
    DT.DT_INT32: "int32",
    DT.DT_UINT8: "uint8",
    DT.DT_INT16: "int16",
    DT.DT_INT8: "int8",
    DT.DT_UINT16: "uint16",
    DT.DT_INT64: "int64",
    DT.DT_UINT32: "uint32",
    DT.DT_UINT64: "uint64",
    DT.DT_BOOL: "bool",
    DT.DT_HALF: "half",
    DT.DT_BFLOAT16: "bfloat16",
    DT.DT_COMPLEX64: "complex64",
    DT.DT_COMPLEX128: "complex128",
    DT.DT_STRING: "string",
    DT.DT_RESOURCE: "resource",
    DT.DT_VARIANT: "variant",
}

_NUMPY_TO_DT = {np_dtype: dt for dt, (np_dtype, _) in _CODECS.items() if dt != DT.DT_STRING}


# TensorProto field numbers of the numeric typed fields: from_numpy writes them
# as packed wire bytes, which protobuf parses in C with no per-element work.
_FIELD_NUMBERS = {
    "float_val": 5,
    "double_val": 6,
    "int_val": 7,
    "scomplex_val": 9,
    "int64_val": 10,
    "bool_val": 11,
    "dcomplex_val": 12,
    "half_val": 13,
    "uint32_val": 16,
    "uint64_val": 17,
}
_FIXED_WIDTH_FIELDS = ("float_val", "double_val", "scomplex_val", "dcomplex_val")
# Below this many values, numpy's per-call overhead costs more than protobuf's
# per-element appends (batch-1 responses are the common case).
_SMALL_COUNT = 256


# TensorShape's limit on the number of elements.
_MAX_ELEMENTS = 2**63 - 1
# Largest tensor (in bytes) a short typed value list may be padded out to.
MAX_FILL_BYTES = 64 * 1024 * 1024


class TensorError(ValueError):
    """A TensorProto that cannot be turned into a tensor (or back)."""


def dtype_name(dtype: int) -> str:
    """TensorFlow's short name for a DataType enum value (`float`, `int64`...)."""
    if dtype in _TF_NAMES:
        return _TF_NAMES[dtype]
    if dtype not in types_pb2.DataType.values():  # a client can send any integer
        return f"unknown dtype enum ({dtype})"
    return types_pb2.DataType.Name(dtype)[3:].lower()


def numpy_dtype(dtype: int) -> np.dtype:
    """The numpy dtype for a DataType enum value; TensorError if unsupported."""
    try:
        return _CODECS[dtype][0]
    except KeyError:
        raise TensorError(f"unsupported tensor dtype {dtype_name(dtype)}") from None


def data_type_of(array: np.ndarray) -> int:
    """The DataType enum value of a numpy array."""
    if array.dtype == object or array.dtype.kind in "SU":
        return DT.DT_STRING
    try:
        return _NUMPY_TO_DT[array.dtype]
    except KeyError:
        raise TensorError(f"unsupported numpy dtype {array.dtype}") from None


def _shape_of(proto: tensor_pb2.TensorProto) -> tuple[tuple, int]:
    """(dims, element count), the count computed exactly and bounded as TensorShape does."""
    dims = tuple(d.size for d in proto.tensor_shape.dim)
    if any(d < 0 for d in dims):
        raise TensorError(f"negative dimension in tensor shape {list(dims)}")
    count = math.prod(dims)
    if count > _MAX_ELEMENTS:
        raise TensorError(f"shape {list(dims)} would have more than 2**63 - 1 elements")
    return dims, count


def _fill(values: np.ndarray, count: int, dtype: np.dtype) -> np.ndarray:
    """TensorFlow's FromProto fill rule for typed fields of `count` elements."""
    n = values.shape[0]
    if n == count:
        return values
    if n > count:
        raise TensorError(f"{n} values given for a tensor of {count} elements")
    if count * dtype.itemsize > MAX_FILL_BYTES:
        # The shape is the client's word; the values are what it sent. Padding a
        # short list out to the shape is bounded, so a few bytes claiming 10^12
        # elements cannot make the server allocate terabytes.
        raise TensorError(
            f"{n} values given for a tensor of {count} elements; padding them out would take "
            f"{count * dtype.itemsize} bytes, more than the {MAX_FILL_BYTES} allowed"
        )
    if n == 0:
        return np.zeros(count, dtype=dtype) if np.dtype(dtype).kind != "O" else np.full(count, b"", dtype=object)
    out = np.empty(count, dtype=dtype)
    out[:n] = values
    out[n:] = values[-1]
    return out


def _packed_payload(raw, field: str) -> bytes:
    """The packed wire bytes of a repeated numeric field (copied and serialised in C)."""
    holder = tensor_pb2.TensorProto()
    getattr(holder, field).MergeFrom(raw)
    wire = holder.SerializeToString()
    if not wire:
        return b""
    pos = 0
    for _ in range(2):  # skip the field tag, then the payload length (both varints)
        while wire[pos] & 0x80:
            pos += 1
        pos += 1
    return wire[pos:]


def _fixed_width_values(raw, field: str, dtype: np.dtype) -> np.ndarray:
    """A float/double/complex field as numpy, through its wire bytes (no per-element work).

    Varint fields (ints, bools, halves) are read with np.fromiter instead: decoding
    their wire bytes in numpy measured slower than protobuf's own iteration.
    """
    wire_dtype = np.dtype(np.float32 if field in ("float_val", "scomplex_val") else np.float64)
    values = np.frombuffer(_packed_payload(raw, field), dtype=wire_dtype.newbyteorder("<"))
    values = values.astype(wire_dtype, copy=False)
    return values.view(dtype) if dtype.kind == "c" else values


def to_numpy(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a TensorProto into a numpy array; TensorError if malformed."""
    dtype, field = _CODECS.get(proto.dtype, (None, None))
    if dtype is None:
        raise TensorError(f"unsupported tensor dtype {dtype_name(proto.dtype)}")
    shape, count = _shape_of(proto)
    if proto.tensor_content and proto.dtype != DT.DT_STRING:
        size = len(proto.tensor_content)
        if size != count * dtype.itemsize:
            raise TensorError(
                f"tensor_content holds {size} bytes, shape {list(shape)} of "
                f"{dtype_name(proto.dtype)} needs {count * dtype.itemsize}"
            )
        flat = np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<"))
        return flat.astype(dtype, copy=False).reshape(shape)
    raw = getattr(proto, field)
    if proto.dtype == DT.DT_STRING:
        values = np.empty(len(raw), dtype=object)
        values[:] = list(raw)
    elif dtype.kind == "c" and len(raw) % 2:
        raise TensorError("complex values need an even number of components")
    elif field in _FIXED_WIDTH_FIELDS:
        values = _fixed_width_values(raw, field, dtype)
    elif proto.dtype == DT.DT_HALF:
        values = np.fromiter(raw, dtype=np.uint16, count=len(raw)).view(np.float16)
    else:
        values = np.fromiter(raw, dtype=dtype, count=len(raw))
    return _fill(values, count, dtype).reshape(shape)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varints(values: np.ndarray) -> bytes:
    """Protobuf's varint encoding of integers or bools, vectorised. Negative
    values take ten bytes (sign-extended to 64 bits), as protobuf writes them."""
    if values.dtype.kind in "ub":
        bits = values.astype(np.uint64)
    else:
        bits = values.astype(np.int64).view(np.uint64)
    lengths = np.ones(bits.shape, dtype=np.intp)
    rest = bits >> 7
    while rest.any():
        lengths += rest != 0
        rest >>= 7
    width = int(lengths.max())
    if width == 1:
        return bits.astype(np.uint8).tobytes()
    groups = np.empty((bits.size, width), dtype=np.uint8)
    for k in range(width):
        more = np.where(lengths > k + 1, 0x80, 0).astype(np.uint8)
        groups[:, k] = ((bits >> (7 * k)) & 0x7F).astype(np.uint8) | more
    return groups[np.arange(width) < lengths[:, None]].tobytes()


def from_numpy(
    array: np.ndarray, as_tensor_content: bool = False, out: tensor_pb2.TensorProto | None = None
) -> tensor_pb2.TensorProto:
    """Encode a numpy array the way TF Serving answers.

    Typed `*_val` fields by default (`Tensor::AsProtoField`); raw
    `tensor_content` bytes when `as_tensor_content` (strings always use
    `string_val`, which every client can decode). `out`: an empty TensorProto
    to fill in place (a response's map entry) instead of a new one, which
    saves copying the whole tensor into the response afterwards.
    """
    array = np.asarray(array)
    dt = data_type_of(array)
    proto = tensor_pb2.TensorProto() if out is None else out
    proto.dtype = dt
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add(size=size)
    if array.size == 0:
        return proto
    if dt == DT.DT_STRING:
        flat = array.ravel()
        if flat.dtype.kind == "U":
            flat = np.char.encode(flat, "utf-8")
        proto.string_val.extend(flat.tolist())
        return proto
    dtype, field = _CODECS[dt]
    if as_tensor_content:
        proto.tensor_content = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
        return proto
    flat = array.ravel()
    if dt == DT.DT_HALF:
        flat = flat.view(np.uint16)  # half_val holds the bit patterns
    elif flat.dtype.kind == "c":
        flat = flat.view(flat.real.dtype)  # (real, imaginary) pairs
    if flat.size < _SMALL_COUNT:
        getattr(proto, field).extend(flat.tolist())
        return proto
    if field in _FIXED_WIDTH_FIELDS:
        payload = np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("<")).tobytes()
    else:
        payload = _varints(flat)
    # Appending a packed field's wire bytes is how protobuf itself would
    # serialise it; parsing it back happens in C, with no per-element work.
    proto.MergeFromString(_varint((_FIELD_NUMBERS[field] << 3) | 2) + _varint(len(payload)) + payload)
    return proto


__all__ = ["TensorError", "dtype_name", "numpy_dtype", "data_type_of", "to_numpy", "from_numpy"]
