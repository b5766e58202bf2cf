"""The REST API end to end on the session server: the same answers as gRPC (for
TF Serving's test model and tfkit's export), TF Serving's byte-exact layouts,
the HTTP transport (gzip, chunked, keep-alive, body limit) and exact error
messages. TF Serving's REST handler suite (routing, labels, CORS) is
conformance/test_rest_api.py; the JSON <-> tensor rules in-process are
unit/test_json_tensor.py."""

import base64
import gzip
import json

import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.tensors import from_numpy, to_numpy

HALF, LOGREG = "half", "logreg"  # the models the session server (conftest.py) serves


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def grpc_predict(stub, model, inputs, signature=""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for name, array in inputs.items():
        request.inputs[name].CopyFrom(from_numpy(array))
    response = stub.Predict(request, timeout=30)
    return {name: to_numpy(t) for name, t in response.outputs.items()}


# -- model status and metadata ------------------------------------------------


def test_model_status_matches_grpc_in_tf_servings_layout(rest, channel):
    status, _, body = rest.request("GET", f"/v1/models/{HALF}")
    assert status == 200
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = HALF
    expected = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
    assert json.loads(body) == json_format.MessageToDict(expected, always_print_fields_with_no_presence=True)
    text = body.decode()
    # protobuf's JSON printer layout: one-space indent, snake_case json names, trailing newline.
    assert text.startswith('{\n "model_version_status": [\n  {\n   "version": "123",\n   "state": "AVAILABLE"')
    assert text.endswith("}\n")


def test_metadata_matches_grpc(rest, stub):
    status, _, body = rest.request("GET", f"/v1/models/{HALF}/metadata")
    assert status == 200
    text = body.decode()
    assert text.startswith(
        '{\n"model_spec":{\n "name": "half",\n "version": "123",\n "signature_name": ""\n}\n,\n"metadata": {"signature_def": {\n'
    )
    data = json.loads(body)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = HALF
    response = stub.GetModelMetadata(request, timeout=30)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_defs)
    assert data["metadata"]["signature_def"] == json_format.MessageToDict(
        signature_defs, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    assert data["model_spec"] == {"name": "half", "version": "123", "signature_name": ""}


# -- predict --------------------------------------------------------------------


def test_predict_row_format_byte_for_byte(rest):
    status, headers, body = rest.request("POST", f"/v1/models/{HALF}:predict", {"instances": [1.0, 2.0, 5.0]})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body == b'{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'


def test_predict_columnar_format_byte_for_byte(rest):
    status, _, body = rest.request("POST", f"/v1/models/{HALF}/versions/123:predict", {"inputs": {"x": [[1.0], [2.0]]}})
    assert status == 200
    assert body == (
        b'{\n    "outputs": [\n        [\n            2.5\n        ],\n        [\n            3.0\n        ]\n    ]\n}'
    )


def test_predict_accepts_nan_and_infinity_tokens(rest):
    status, _, body = rest.request(
        "POST", f"/v1/models/{HALF}:predict", b'{"instances": [NaN, Infinity, -Infinity, -Inf, 1e3]}'
    )
    assert status == 200
    assert body == b'{\n    "predictions": [NaN, Infinity, -Infinity, -Infinity, 502.0\n    ]\n}'


def test_tfkit_model_rest_equals_grpc(rest, stub, exported_version):
    heldout = np.load(exported_version / "assets.extra" / "heldout.npz")["features"][
        :12
    ]  # within the batching max_batch_size of 16
    expected = grpc_predict(stub, LOGREG, {"features": heldout})
    status, data = rest.json("POST", f"/v1/models/{LOGREG}:predict", {"instances": heldout.tolist()})
    assert status == 200
    rows = data["predictions"]
    assert len(rows) == len(heldout) and set(rows[0]) == set(expected)
    for name, array in expected.items():
        got = np.array([row[name] for row in rows], dtype=array.dtype)
        # Floats are printed so they parse back to the very same float32.
        np.testing.assert_array_equal(got, array)

    status, data = rest.json("POST", f"/v1/models/{LOGREG}:predict", {"inputs": {"features": heldout.tolist()}})
    assert status == 200
    for name, array in expected.items():
        np.testing.assert_array_equal(np.array(data["outputs"][name], dtype=array.dtype), array)


def test_float32_outputs_round_trip_exactly(rest, stub):
    # Values chosen so six significant digits are not enough for some outputs.
    x = np.array([[0.1234567], [1 / 3], [123456.79], [1e-7], [3.0]], dtype=np.float32)
    expected = grpc_predict(stub, HALF, {"x": x})["y"]
    status, _, body = rest.request("POST", f"/v1/models/{HALF}:predict", {"instances": x.tolist()})
    assert status == 200
    got = np.array(json.loads(body)["predictions"], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)
    assert b"3.0]" in body or b"3.5]" in body  # whole numbers keep their ".0"


def test_predict_b64_string_input(rest, stub):
    example = example_pb2.Example()
    example.features.feature["x"].float_list.value.append(3.0)
    serialized = example.SerializeToString()
    body = {"signature_name": "classify_x_to_y", "instances": [{"b64": base64.b64encode(serialized).decode()}]}
    status, data = rest.json("POST", f"/v1/models/{HALF}:predict", body)
    assert status == 200
    expected = grpc_predict(stub, HALF, {"inputs": np.array([serialized], dtype=object)}, "classify_x_to_y")
    assert data["predictions"] == expected["scores"].tolist() == [[3.5]]


# -- classify / regress ---------------------------------------------------------


def test_classify_and_regress_equal_grpc(rest, stub):
    examples = [{"x": 1.0}, {"x": 3.0}]
    status, _, body = rest.request(
        "POST", f"/v1/models/{HALF}:classify", {"signature_name": "classify_x_to_y", "examples": examples}
    )
    assert status == 200
    assert body == b'{\n    "results": [[["", 2.5]], [["", 3.5]]\n    ]\n}'

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = HALF
    request.model_spec.signature_name = "regress_x_to_y"
    for value in (1.0, 3.0):
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(value)
    expected = [r.value for r in stub.Regress(request, timeout=30).result.regressions]
    status, _, body = rest.request(
        "POST", f"/v1/models/{HALF}:regress", {"signature_name": "regress_x_to_y", "examples": examples}
    )
    assert status == 200
    assert body == b'{\n    "results": [2.5, 3.5]\n}'
    assert json.loads(body)["results"] == expected


def test_classify_with_context(rest, stub):
    body = {"signature_name": "classify_x2_to_y3", "context": {"x2": 4.0}, "examples": [{}, {}]}
    status, data = rest.json("POST", f"/v1/models/{HALF}:classify", body)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = HALF
    request.model_spec.signature_name = "classify_x2_to_y3"
    request.input.example_list_with_context.context.features.feature["x2"].float_list.value.append(4.0)
    request.input.example_list_with_context.examples.add()
    request.input.example_list_with_context.examples.add()
    try:
        expected = stub.Classify(request, timeout=30)
    except grpc.RpcError as err:
        assert status == {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400}.get(
            err.code(), 500
        )
        assert data["error"] == err.details()
        return
    assert status == 200
    assert data["results"] == [
        [[c.label, pytest.approx(c.score)] for c in cl.classes] for cl in expected.result.classifications
    ]


# -- transport details ----------------------------------------------------------


def test_gzip_and_chunked_bodies(rest):
    payload = json.dumps({"instances": [1.0, 2.0]}).encode()
    status, _, body = rest.request(
        "POST", f"/v1/models/{HALF}:predict", gzip.compress(payload), {"Content-Encoding": "gzip"}
    )
    assert status == 200 and json.loads(body)["predictions"] == [2.5, 3.0]

    def chunks():
        yield payload[:7]
        yield payload[7:]

    # http.client sends an iterable body with Transfer-Encoding: chunked.
    status, _, body = rest.request("POST", f"/v1/models/{HALF}:predict", chunks())
    assert status == 200 and json.loads(body)["predictions"] == [2.5, 3.0]


def test_keep_alive_connection_serves_many_requests(ops_server):
    import http.client

    host, port = ops_server.rest_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for x in range(5):
            conn.request("POST", f"/v1/models/{HALF}:predict", json.dumps({"instances": [float(x)]}))
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["predictions"] == [0.5 * x + 2]
    finally:
        conn.close()


def test_oversized_body_is_refused_before_reading_it(ops_server):
    import http.client

    host, port = ops_server.rest_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", f"/v1/models/{HALF}:predict")
        conn.putheader("Content-Length", str(200 * 1024 * 1024))
        conn.endheaders()  # no body sent: the answer must not wait for 200 MiB
        response = conn.getresponse()
        assert response.status == 413
        assert "exceeds the limit" in json.loads(response.read())["error"]
    finally:
        conn.close()


# -- errors ---------------------------------------------------------------------

PREDICT = f"/v1/models/{HALF}:predict"

ERROR_CASES = [
    # (method, path, body, HTTP status, exact message or None, substring)
    ("POST", PREDICT, b'{"instances": [1.0,', 400, None, "JSON Parse error: "),
    ("POST", PREDICT, b"", 400, "JSON Parse error: The document is empty", None),
    ("POST", PREDICT, b"[1, 2]", 400, "JSON Value: [1, 2] Is not object", None),
    (
        "POST",
        PREDICT,
        b'{"instances": []}',
        400,
        "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array",
        None,
    ),
    (
        "POST",
        PREDICT,
        b'{"instances": [1], "inputs": [1]}',
        400,
        None,
        "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist",
    ),
    ("POST", PREDICT, b'{"signature_name": "serving_default"}', 400, "Missing 'inputs' or 'instances' key", None),
    (
        "POST",
        PREDICT,
        b'{"instances": ["a"]}',
        400,
        "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
        'JSON Value: "a" Type: String is not of expected type: float',
        None,
    ),
    (
        "POST",
        PREDICT,
        b'{"instances": [[1.0], [2.0, 3.0]]}',
        400,
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting tensor size: 1 but got: 2",
        None,
    ),
    ("POST", PREDICT, b'{"inputs": {"y": [1.0]}}', 400, "Missing named input: x in 'inputs' object.", None),
    (
        "POST",
        f"/v1/models/{HALF}:PREDICT",
        b'{"instances": [1.0]}',
        400,
        f"Malformed request: POST /v1/models/{HALF}:PREDICT",
        None,
    ),
    ("PUT", PREDICT, b'{"instances": [1.0]}', 400, f"Malformed request: PUT {PREDICT}", None),
    ("GET", "/v1/models", None, 400, "Missing model name in request.", None),
    ("GET", "/v1/models/nope", None, 404, None, "nope"),
    (
        "POST",
        f"/v1/models/{HALF}:classify",
        b'{"signature_name": "classify_x_to_y"}',
        400,
        None,
        "When method is classify, key 'examples' is expected and was not found",
    ),
    (
        "POST",
        f"/v1/models/{HALF}:regress",
        b'{"examples": [[1]]}',
        400,
        "Example must be JSON object but got JSON Array",
        None,
    ),
    (
        "POST",
        f"/v1/models/{HALF}:regress",
        b'{"examples": [{"x": [1, "a"]}]}',
        400,
        "Unexpected element type in feature: x expecting type: int64",
        None,
    ),
]


@pytest.mark.parametrize(
    "method,path,body,status,message,fragment", ERROR_CASES, ids=[f"{c[0]} {c[1]} {c[2]!r:.40}" for c in ERROR_CASES]
)
def test_error_status_and_message(rest, method, path, body, status, message, fragment):
    got_status, headers, data = rest.request(method, path, body)
    assert got_status == status
    assert headers["Content-Type"] == "application/json"
    error = json.loads(data)["error"]
    if message is not None:
        assert error == message
    else:
        assert fragment in error


def test_unknown_path_gets_libevents_404(rest):
    status, headers, body = rest.request("GET", "/nothing/here")
    assert status == 404
    assert headers["Content-Type"].startswith("text/html")
    assert b"<TITLE>404 Not Found</TITLE>" in body


def test_hostile_bodies_answer_400_not_500(rest):
    deep = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    huge_number = b'{"instances": [1' + b"0" * 5000 + b"]}"
    for body in (
        deep,
        huge_number,
        b'{"instances": [1e400]}',
        b"\xff\xfe{}",
        b'{"instances": [{"b64": "!!"}]}',
        b'{"instances": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]'
        b"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
    ):
        status, _, data = rest.request("POST", PREDICT, body)
        assert status == 400, (body[:60], data[:200])
        assert json.loads(data)["error"]
    # The server is still fine afterwards.
    status, data = rest.json("POST", PREDICT, {"instances": [2.0]})
    assert (status, data["predictions"]) == (200, [3.0])


def test_tfkit_classify_and_regress_equal_grpc(rest, stub, exported_version):
    """A TF2 export's classify/regress signatures over tf.Example, REST vs gRPC."""
    features = np.load(exported_version / "assets.extra" / "heldout.npz")["features"][:5]
    names = [f"x{i}" for i in range(features.shape[1])]  # the model's default feature keys
    examples = [dict(zip(names, map(float, row))) for row in features]

    def fill(request, signature):
        request.model_spec.name = LOGREG
        request.model_spec.signature_name = signature
        for row in examples:
            feature = request.input.example_list.examples.add().features.feature
            for key, number in row.items():
                feature[key].float_list.value.append(number)
        return request

    classes = stub.Classify(fill(classification_pb2.ClassificationRequest(), "classify"), timeout=30).result
    status, data = rest.json(
        "POST", f"/v1/models/{LOGREG}:classify", {"signature_name": "classify", "examples": examples}
    )
    assert status == 200, data
    # Scores are float32 on both sides: REST prints them so they parse back exactly.
    assert [[[label, np.float32(score)] for label, score in row] for row in data["results"]] == [
        [[c.label, np.float32(c.score)] for c in cl.classes] for cl in classes.classifications
    ]

    values = stub.Regress(fill(regression_pb2.RegressionRequest(), "regress"), timeout=30).result
    status, data = rest.json(
        "POST", f"/v1/models/{LOGREG}:regress", {"signature_name": "regress", "examples": examples}
    )
    assert status == 200, data
    assert [np.float32(v) for v in data["results"]] == [np.float32(r.value) for r in values.regressions]
