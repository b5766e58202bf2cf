"""REST request parsing and response writing as TF Serving's
json_tensor_test.cc specifies them, end to end through a model that hands its
inputs back (the `echo` model of the generated config). The same rules
in-process, message by message, are unit/test_json_tensor.py."""

import http.client
import json

import pytest

ROWS = [
    {
        "int_tensor": [[1, 2], [3, 4], [5, 6]],
        "str_tensor": ["foo", "bar"],
        "float_tensor": [1.0],
        "double_scalar_tensor": 8.0,
        "str_tensor_bytes": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
    },
    {
        "int_tensor": [[7, 8], [9, 0], [1, 2]],
        "str_tensor": ["baz", "bat"],
        "float_tensor": [2.0],
        "double_scalar_tensor": 9.0,
        "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
    },
]


@pytest.fixture(scope="module")
def echo(server):
    return server("generated")


def post(server, body, signature=None):
    """(HTTP status, raw body text) of a predict call on the echo model."""
    if signature is not None:
        body = {"signature_name": signature, **body}
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    try:
        connection.request("POST", "/v1/models/echo:predict", body=json.dumps(body))
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_row_format_round_trips_every_dtype_with_b64_for_bytes_aliases(echo):
    status, text = post(echo, {"instances": ROWS})
    assert status == 200, text
    assert json.loads(text) == {"predictions": ROWS}


def test_columnar_format_round_trips_every_dtype(echo):
    columns = {name: [row[name] for row in ROWS] for name in ROWS[0]}
    status, text = post(echo, {"inputs": columns})
    assert status == 200, text
    assert json.loads(text) == {"outputs": columns}


def test_floats_keep_six_significant_digits_and_non_finite_literals(echo):
    """FromJsonSingleFloatTensorSixDigitPrecision / ...NonFinite compare the
    number texts themselves."""
    status, text = post(
        echo,
        {
            "instances": [
                [9000000, 999999, 0.5],
                [0.0003, 0.00003, 555557.5],
                [float("nan"), float("inf"), float("-inf")],
            ]
        },
        signature="floats",
    )
    assert status == 200, text
    numbers = text[text.index("[") + 1 : text.rindex("]")].replace("[", "").replace("]", "")
    assert [token.strip() for token in numbers.split(",")] == [
        "9e+06",
        "999999.0",
        "0.5",
        "0.0003",
        "3e-05",
        "555557.5",
        "NaN",
        "Infinity",
        "-Infinity",
    ]


def test_row_format_output_with_inconsistent_batch_sizes_is_an_error(echo):
    status, text = post(echo, {"instances": [[1, 2, 3], [4, 5, 6]]}, signature="uneven")
    assert status == 400
    assert "has inconsistent batch size" in json.loads(text)["error"]


def test_output_dtype_json_cannot_hold_is_an_error(echo):
    status, text = post(echo, {"instances": [1.0]}, signature="complex")
    assert status != 200
    assert "tensor type: complex64" in json.loads(text)["error"]


# Ragged rows, both formats at once, wrong element types and a non-string
# signature_name are checked with their exact messages in test_rest_api.py and
# servers/serving_ops/test_rest.py.
@pytest.mark.parametrize(
    "body,message",
    [
        ({"instances": [[1, 2, 3], [[3, 4, 5]]]}, "Expecting shape"),
        ({"instances": [[1, 2, 3], {"x": [1, 2, 3]}]}, "Expecting value/list but got object"),
    ],
)
def test_request_errors(echo, body, message):
    status, text = post(echo, body, signature="floats")
    assert status == 400
    assert message in json.loads(text)["error"]


def test_rows_of_objects_mixed_with_lists_is_an_error(echo):
    status, text = post(echo, {"instances": [ROWS[0], [1, 20, 30]]})
    assert status == 400
    assert "Expecting object but got list" in json.loads(text)["error"]
