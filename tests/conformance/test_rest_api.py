"""The REST API as TF Serving's http_rest_api_handler_test.cc and
http_server.cc specify it: a two-version model with only version 123 aspired
and a version label added by a config reload, exact JSON bodies, the
Content-Type header, and errors as {"error": ...} with the HTTP status
TF Serving maps each status code to."""

import http.client
import json

import pytest

from conformance_helpers import HANDLER_MODELS, LABEL, TESTDATA

MODEL = HANDLER_MODELS[0][0]


def call(server, method, path, body=None):
    """(HTTP status, Content-Type, parsed JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    try:
        payload = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        connection.request(method, path, body=payload)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), json.loads(response.read())
    finally:
        connection.close()


def error_of(server, method, path, body=None, status=400):
    """The error message of a request that must fail with `status`."""
    code, _, answer = call(server, method, path, body)
    assert code == status, answer
    assert list(answer) == ["error"]
    return answer["error"]


@pytest.mark.parametrize(
    "method,path,message",
    [
        ("GET", "/v1/foo", "Malformed request"),
        ("POST", "/v1/foo", "Malformed request"),
        ("GET", "/v1/models/debug/model_name", "Malformed request"),
        ("POST", "/v1/models", "Malformed request"),
        ("GET", "/v1/models/foo:predict", "Malformed request"),
        ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
        ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
        ("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "Failed to convert version"),
        ("POST", "/v1/models/foo/metadata", "Malformed request"),
        ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request"),
    ],
)
def test_unsupported_api_calls(handler, method, path, message):
    assert message in error_of(handler, method, path, "" if method == "POST" else None)


@pytest.mark.parametrize(
    "path,request_spec",
    [
        ("/v1/models/foo:predict", "Latest(foo)"),
        ("/v1/models/foo/versions/50:predict", "Specific(foo, 50)"),
        (f"/v1/models/{MODEL}99:predict", f"Latest({MODEL}99)"),
        (f"/v1/models/{MODEL}/versions/124:predict", f"Specific({MODEL}, 124)"),  # on disk, but not aspired
    ],
)
def test_predict_unknown_model_or_version_is_404(handler, path, request_spec):
    message = error_of(handler, "POST", path, {"instances": [1]}, status=404)
    assert message == f"Servable not found for request: {request_spec}"


# An empty body, elements of the wrong type and a missing model name are
# checked with their exact messages in servers/serving_ops/test_rest.py.
@pytest.mark.parametrize(
    "path,body,message",
    [
        (f"/v1/models/{MODEL}:predict", "instances = [1, 2]", "JSON Parse error: Invalid value"),
        (
            f"/v1/models/{MODEL}/labels/Version_Nonexistent:predict",
            {"instances": ["x", "y"]},
            "Unrecognized servable version label",
        ),
        (f"/v1/models/{MODEL}:predict", {"signature_name": 100}, "'signature_name' key must be a string value."),
    ],
)
def test_predict_request_errors(handler, path, body, message):
    assert message in error_of(handler, "POST", path, body)


@pytest.mark.parametrize(
    "path,body,expected",
    [
        (
            f"/v1/models/{MODEL}:predict",
            {"instances": [[1.0, 2.0], [3.0, 4.0]]},
            {"predictions": [[2.5, 3.0], [3.5, 4.0]]},
        ),
        (f"/v1/models/{MODEL}/versions/123:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
        (f"/v1/models/{MODEL}/labels/{LABEL}:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
        (
            f"/v1/models/{MODEL}/versions/123:predict",
            {"signature_name": "serving_default", "instances": [3.0, 4.0]},
            {"predictions": [3.5, 4.0]},
        ),
        (
            f"/v1/models/{MODEL}/versions/123:predict",
            {"signature_name": "serving_default", "inputs": [3.0, 4.0]},
            {"outputs": [3.5, 4.0]},
        ),
        (
            f"/v1/models/{MODEL}:regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
            {"results": [42]},
        ),
        (
            f"/v1/models/{MODEL}/versions/123:regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
            {"results": [42]},
        ),
        (
            f"/v1/models/{MODEL}/labels/{LABEL}:regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
            {"results": [42]},
        ),
        (
            f"/v1/models/{MODEL}:classify",
            {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]},
            {"results": [[["", 12]]]},
        ),
        (
            f"/v1/models/{MODEL}/labels/{LABEL}:classify",
            {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]},
            {"results": [[["", 7]]]},
        ),
    ],
)
def test_inference(handler, path, body, expected):
    status, content_type, answer = call(handler, "POST", path, body)
    assert (status, content_type, answer) == (200, "application/json", expected)


@pytest.mark.parametrize("suffix", ["", "/versions/123", f"/labels/{LABEL}"])
def test_get_status(handler, suffix):
    status, content_type, answer = call(handler, "GET", f"/v1/models/{MODEL}{suffix}")
    assert (status, content_type) == (200, "application/json")
    assert answer == {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def test_get_model_metadata(handler):
    status, content_type, answer = call(handler, "GET", f"/v1/models/{MODEL}/metadata")
    assert (status, content_type) == (200, "application/json")
    expected = json.loads((TESTDATA / f"{MODEL}_metadata.json").read_text())
    assert answer == expected


def test_predict_unknown_signature_is_400_as_the_rest_handler_words_it(handler):
    message = error_of(handler, "POST", f"/v1/models/{MODEL}:predict", {"signature_name": "nope", "instances": [1.0]})
    assert message == 'Serving signature name: "nope" not found in signature def'


CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}


def raw_call(server, method, path, headers=None):
    """(HTTP status, response headers, raw body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_cors_headers_and_preflight_with_rest_api_enable_cors_support(server):
    """http_server.cc: CORS headers on every answer; OPTIONS needs an http(s) Origin."""
    cors = server("tf2")
    status, headers, _ = raw_call(cors, "GET", "/v1/models/default")
    assert status == 200 and CORS_HEADERS.items() <= headers.items()
    for origin in ("http://example.com", "https://example.test"):
        status, headers, body = raw_call(cors, "OPTIONS", "/v1/models/default:predict", {"Origin": origin})
        assert (status, body) == (200, b"") and CORS_HEADERS.items() <= headers.items()
    status, _, _ = raw_call(cors, "OPTIONS", "/v1/models/default:predict")
    assert status == 400  # "Origin header is missing in CORS preflight"


def test_no_cors_headers_by_default(handler):
    _, headers, _ = raw_call(handler, "GET", f"/v1/models/{MODEL}")
    assert not set(CORS_HEADERS) & set(headers)
