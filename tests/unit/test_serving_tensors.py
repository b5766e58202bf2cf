"""serving.tensors: every TensorProto encoding a client may send decodes like
TensorFlow's Tensor::FromProto, and answers encode like AsProtoField /
AsProtoTensorContent (checked against tf.make_tensor_proto / tf.make_ndarray)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.tensors import TensorError, from_numpy, to_numpy

ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    np.array([1e300, -2.5]),
    np.array([[1, -2], [3, 2**31 - 1]], dtype=np.int32),
    np.array([2**40, -(2**62)], dtype=np.int64),
    np.array([0, 255], dtype=np.uint8),
    np.array([-128, 127], dtype=np.int8),
    np.array([True, False, True]),
    np.array([0.5, -1.25], dtype=np.float16),
    np.array([1 + 2j, -3j], dtype=np.complex64),
    np.array([[b"ab", b""], [b"\xff", b"x"]], dtype=object),
    np.zeros((0, 3), dtype=np.float32),
    np.float32(3.5).reshape(()),
    np.arange(1000, dtype=np.int64) - 500,  # large enough for the packed-varint path
    np.linspace(-1, 1, 1000).astype(np.float32),
    # large typed fields decode through their wire bytes: every varint width
    np.array([0, 1, -1, 127, 128, -(2**63), 2**63 - 1] * 50, dtype=np.int64),
    np.array([-(2**31), 2**31 - 1, 0, -5] * 80, dtype=np.int32),
    np.array([0, 2**64 - 1, 2**35] * 100, dtype=np.uint64),
    np.array([0, 2**32 - 1] * 150, dtype=np.uint32),
    np.array([-32768, 32767] * 150, dtype=np.int16),
    np.array([True, False] * 200),
    np.linspace(-4, 4, 300).astype(np.float16),
    (np.arange(300) * (1 - 1j)).astype(np.complex128),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
@pytest.mark.parametrize("as_content", [False, True])
def test_round_trip_and_tensorflow_agrees(array, as_content):
    proto = from_numpy(array, as_content)
    for decoded in (to_numpy(proto), tf.make_ndarray(proto)):
        assert decoded.shape == array.shape
        np.testing.assert_array_equal(decoded, array)
    if array.size and array.dtype != object:
        assert bool(proto.tensor_content) == as_content


def test_decodes_tensorflow_encodings():
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    assert to_numpy(tf.make_tensor_proto(x)).tolist() == x.tolist()  # tensor_content
    assert to_numpy(tf.make_tensor_proto(7, shape=[2, 2])).tolist() == [[7, 7], [7, 7]]
    assert to_numpy(tf.make_tensor_proto(["a", "bc"])).tolist() == [b"a", b"bc"]


def test_fill_rules_of_from_proto():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=4)
    assert to_numpy(proto).tolist() == [0, 0, 0, 0]  # no values: zeros
    proto.float_val.extend([1, 2])
    assert to_numpy(proto).tolist() == [1, 2, 2, 2]  # short: padded with the last value
    proto.float_val.extend([3, 4, 5])
    with pytest.raises(TensorError):
        to_numpy(proto)  # more values than elements


def test_typed_fields_from_a_client_decode_at_any_size():
    for n in (3, 1000):
        proto = tf.make_tensor_proto(np.arange(n, dtype=np.int64) - n // 2)
        typed = tensor_pb2.TensorProto(dtype=proto.dtype, tensor_shape=proto.tensor_shape)
        typed.int64_val.extend((np.arange(n) - n // 2).tolist())
        assert to_numpy(typed).tolist() == (np.arange(n) - n // 2).tolist()


def test_malformed_protos_are_errors():
    content = from_numpy(np.ones(3, np.float32), as_tensor_content=True)
    content.tensor_shape.dim[0].size = 4
    with pytest.raises(TensorError):
        to_numpy(content)
    with pytest.raises(TensorError):
        to_numpy(tensor_pb2.TensorProto(dtype=types_pb2.DT_RESOURCE))
    odd = tensor_pb2.TensorProto(dtype=types_pb2.DT_COMPLEX64, scomplex_val=[1.0] * 301)
    odd.tensor_shape.dim.add(size=150)
    with pytest.raises(TensorError):
        to_numpy(odd)
