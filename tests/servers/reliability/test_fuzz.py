"""Hostile input: >= 1000 malformed gRPC requests and malformed REST bodies against one server."""

import os
import subprocess
import sys
import time
import tracemalloc

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from reliability.fuzz import PREDICT, GrpcCases, _predict_bytes, rest_cases, run_grpc_fuzz, run_rest_fuzz
from reliability.soak import rss_bytes
from reliability.traffic import TrafficClient
from serving.tensors import TensorError, to_numpy

from reliability_helpers import MODEL
from support import unread_bytes, wait_for

REQUIRED_GRPC = {
    "random bytes (unparseable)",
    "wrong dtype",
    "dims claiming billions of elements",
    "negative dims",
    "tensor_content length mismatch",
    "string tensor for float input",
    "NaN/Inf values",
    "empty batch",
    "unknown fields",
}
REQUIRED_REST = {
    "invalid JSON: random bytes",
    "deep nesting",
    "huge numbers",
    "wrong types or shapes",
    "oversized body (declared)",
}


def _answers_correctly(server, reference):
    client = TrafficClient(server.grpc_target, server.rest_url, MODEL, reference, seed=7)
    try:
        return [(o.kind, o.error) for o in (client.request(k) for k in client.kinds) if o.error]
    finally:
        client.close()


def test_grpc_fuzz_every_answer_right_and_server_still_correct(logreg_server, reference):
    pid = logreg_server.process.pid
    rss_before = rss_bytes(pid)
    result = run_grpc_fuzz(logreg_server.grpc_target, MODEL, reference, count=1200, seed=1)
    print(result.summary())
    assert result.cases >= 1000
    assert set(result.per_category) >= REQUIRED_GRPC
    assert result.failures == [], result.summary()
    assert logreg_server.process.poll() is None
    assert _answers_correctly(logreg_server, reference) == []
    assert rss_bytes(pid) - rss_before < 100 * 2**20


def test_rest_fuzz_every_answer_right_and_server_still_correct(logreg_server, reference):
    result = run_rest_fuzz(logreg_server.rest_url, MODEL, reference, seed=1)
    print(result.summary())
    assert set(result.per_category) >= REQUIRED_REST
    assert result.failures == [], result.summary()
    assert logreg_server.process.poll() is None
    assert _answers_correctly(logreg_server, reference) == []


@pytest.mark.parametrize(
    "fields",
    [{"float_val": [1.0]}, {}, {"tensor_content": b"\0" * 8}],
    ids=["one value", "no values", "8 bytes of content"],
)
def test_shape_claiming_10_12_elements_fails_fast_with_small_rss(logreg_server, reference, fields):
    """A request of a few bytes whose dims claim 10^12 floats: INVALID_ARGUMENT at once, no big allocation."""
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[
                tensor_shape_pb2.TensorShapeProto.Dim(size=500_000_000_000),
                tensor_shape_pb2.TensorShapeProto.Dim(size=reference.num_features),
            ]
        ),
        **fields,
    )
    payload = _predict_bytes(MODEL, {"features": tensor})
    assert len(payload) < 100
    pid = logreg_server.process.pid
    rss_before = rss_bytes(pid)
    with grpc.insecure_channel(logreg_server.grpc_target) as channel:
        call = channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)
        started = time.perf_counter()
        with pytest.raises(grpc.RpcError) as err:
            call(payload, timeout=10)
        elapsed = time.perf_counter() - started
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "features" in err.value.details()
    assert elapsed < 1.0
    assert rss_bytes(pid) - rss_before < 20 * 2**20


@pytest.mark.parametrize(
    "dims, fields",
    [
        ([10**12, 2], {"float_val": [1.0]}),
        ([10**12, 2], {}),
        ([2**40, 2**40], {}),  # overflows int64: must not wrap to a small count
        ([10**12, 2], {"tensor_content": b"\0" * 8}),
        ([10**9], {"string_val": [b"x"]}),
        ([3, 2], {"tensor_content": b"\0" * 23}),  # not a whole number of floats
    ],
)
def test_decoder_checks_the_shape_against_the_payload_before_allocating(dims, fields):
    dtype = types_pb2.DT_STRING if "string_val" in fields else types_pb2.DT_FLOAT
    proto = tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
        ),
        **fields,
    )
    tracemalloc.start()
    try:
        with pytest.raises(TensorError):
            to_numpy(proto)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_padding_a_short_value_list_still_works_within_bounds():
    """TensorFlow's fill rule (a short list is padded with its last value) is kept for sane sizes."""
    proto = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        float_val=[1.0, 2.0],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1000)]),
    )
    np.testing.assert_array_equal(to_numpy(proto), np.r_[1.0, np.full(999, 2.0)].astype(np.float32))


def test_fuzz_generators_are_deterministic_and_cover_every_category(reference):
    one = [c.payload for c in GrpcCases(MODEL, reference.num_features, reference.feature_names, 3).cases(200)]
    two = [c.payload for c in GrpcCases(MODEL, reference.num_features, reference.feature_names, 3).cases(200)]
    assert one == two
    assert {c.category for c in rest_cases(MODEL, reference.num_features, 0)} >= REQUIRED_REST


def test_fuzz_command_against_a_running_server(logreg_server, exported_model):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reliability",
            "fuzz",
            "--count",
            "200",
            "--target",
            logreg_server.grpc_target,
            "--rest-url",
            logreg_server.rest_url,
            "--model-base-path",
            str(exported_model),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gRPC: 200 cases, 0 answered wrongly" in done.stdout
    assert "server still answers correctly" in done.stdout


def test_rest_bodies_declared_large_but_not_sent_cost_no_memory(logreg_server, reference):
    """Eight connections each declaring a 99 MiB body (under the limit) and sending 10 bytes."""
    import socket

    pid = logreg_server.process.pid
    rss_before = rss_bytes(pid)
    head = (
        f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {99 * 2**20}\r\n\r\n"
    ).encode()
    sockets = [socket.create_connection(("127.0.0.1", logreg_server.rest_port), timeout=10) for _ in range(8)]
    try:
        # Head first, then the start of the body: once the server has read those
        # bytes too, it is reading the body, past the point where it would have
        # allocated room for all of it.
        for part in (head, b'{"instance'):
            for sock in sockets:
                sock.sendall(part)
            wait_for(lambda: all(unread_bytes(conn) == 0 for conn in sockets), what="the server to read what was sent")
        assert rss_bytes(pid) - rss_before < 50 * 2**20
    finally:
        for sock in sockets:
            sock.close()
    assert _answers_correctly(logreg_server, reference) == []
