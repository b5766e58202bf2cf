"""serving.json_tensor on its own: TF Serving's JSON rules without a server."""

import base64

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, regression_pb2

from serving import json_tensor as jt
from serving.errors import ServingError

F, I32, I64, S, B, U8 = (
    types_pb2.DT_FLOAT,
    types_pb2.DT_INT32,
    types_pb2.DT_INT64,
    types_pb2.DT_STRING,
    types_pb2.DT_BOOL,
    types_pb2.DT_UINT8,
)


def inputs(body: bytes, dtypes):
    return jt.predict_inputs(jt.parse_json(body), dtypes)


def error_of(call, *args) -> ServingError:
    with pytest.raises(ServingError) as err:
        call(*args)
    return err.value


def test_row_and_columnar_give_the_same_tensors():
    row, fmt = inputs(b'{"instances": [{"a": [1, 2], "b": "x"}, {"a": [3, 4], "b": "y"}]}', {"a": I64, "b": S})
    assert fmt == jt.ROW
    col, fmt = inputs(b'{"inputs": {"a": [[1, 2], [3, 4]], "b": ["x", "y"], "ignored": 1}}', {"a": I64, "b": S})
    assert fmt == jt.COLUMNAR
    for got in (row, col):
        assert got["a"].dtype == np.int64 and got["a"].tolist() == [[1, 2], [3, 4]]
        assert got["b"].tolist() == [b"x", b"y"]


def test_typed_values_and_b64():
    got, _ = inputs(b'{"inputs": [true, false]}', {"x": B})
    assert got["x"].dtype == np.bool_ and got["x"].tolist() == [True, False]
    got, _ = inputs(b'{"inputs": [300]}', {"x": U8})  # wraps like TF's static_cast from int_val
    assert got["x"].dtype == np.uint8 and got["x"].tolist() == [44]
    payload = base64.b64encode(b"\x00\xffbytes").decode()
    got, _ = inputs(('{"instances": [{"b64": "%s"}]}' % payload).encode(), {"x": S})
    assert got["x"].tolist() == [b"\x00\xffbytes"]
    got, _ = inputs(b'{"inputs": 5}', {"x": F})  # a scalar
    assert got["x"].shape == () and got["x"] == 5


@pytest.mark.parametrize(
    "body,dtypes,message",
    [
        (
            b'{"instances": [1.5]}',
            {"x": I32},
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON Value: 1.5 Type: Number is not of expected type: int32",
        ),
        (
            b'{"instances": [true]}',
            {"x": F},
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON Value: true Type: True is not of expected type: float",
        ),
        (
            b'{"instances": [9223372036854775808]}',
            {"x": I64},
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON Value: 9223372036854775808 Type: Number is not of expected type: int64",
        ),
        (
            b'{"inputs": [[1], 2]}',
            {"x": F},
            "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected at level: 2",
        ),
        (b'{"inputs": [1, [2]]}', {"x": F}, "Encountered list at unexpected level: 1 expected < 1"),
        (b'{"inputs": [[1, 2], [3]]}', {"x": F}, "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
        (
            b'{"instances": [1.0]}',
            {"a": F, "b": F},
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
            "tensorinfo_map",
        ),
        (
            b'{"instances": [{"a": 1.0}]}',
            {"a": F, "b": F},
            "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"a\": 1.0\n} keys must be equal to: a,b",
        ),
        (b'{"inputs": [{"b64": "%%%"}]}', {"x": S}, "Unable to base64 decode"),
        (
            b'{"inputs": [{"b64": "aa", "x": 1}]}',
            {"x": S},
            'JSON Value: {\n    "b64": "aa",\n    "x": 1\n} not formatted correctly for base64 data',
        ),
        (
            b'{"instances": "x"}',
            {"x": F},
            'JSON Value: {\n    "instances": "x"\n} Expecting \'instances\' to be an list/array',
        ),
    ],
)
def test_conversion_errors_carry_tf_servings_messages(body, dtypes, message):
    err = error_of(inputs, body, dtypes)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message == message


@pytest.mark.parametrize(
    "body,message",
    [
        (b"{", "JSON Parse error: Missing a name for object member. at offset: 1"),
        (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
        (b'{"a": 1 "b": 2}', "JSON Parse error: Missing a comma or '}' after an object member. at offset: 8"),
        (b'{"a": [1 2]}', "JSON Parse error: Missing a comma or ']' after an array element. at offset: 9"),
        (b'{"a": "x', "JSON Parse error: Missing a closing quotation mark in string. at offset: 6"),
        (b"   ", "JSON Parse error: The document is empty. at offset: 3"),
    ],
)
def test_parse_errors_use_rapidjsons_wording(body, message):
    assert error_of(jt.parse_json, body).message == message


def test_parse_stops_after_the_first_value_and_reads_inf_tokens():
    doc = jt.parse_json(b'{"a": [Inf, -Inf, NaN]} trailing garbage')
    assert doc["a"][0] == float("inf") and doc["a"][1] == float("-inf") and doc["a"][2] != doc["a"][2]


def test_debug_strings_print_numbers_like_rapidjson():
    assert (
        jt.debug_string([1.0, 1e20, 1e21, 1.5e-7, 0.001, -2.5, 12, 'q"\x01'])
        == '[1.0, 100000000000000000000.0, 1e21, 1.5e-7, 0.001, -2.5, 12, "q\\"\\u0001"]'
    )
    assert len(jt.debug_string(list(range(1000)))) < 300  # truncated like TF Serving's messages


def test_columnar_multi_output_and_bytes_layout():
    body = jt.predict_response({"a_bytes": np.array([b"hi"], dtype=object), "n": np.array([7])}, jt.COLUMNAR)
    assert body == (
        b'{\n    "outputs": {\n        "a_bytes": [\n            {\n                "b64": "aGk="\n'
        b'            }\n        ],\n        "n": [\n            7\n        ]\n    }\n}'
    )


def test_row_output_checks_batch_sizes():
    err = error_of(jt.predict_response, {"a": np.zeros(2), "b": np.zeros(3)}, jt.ROW)
    assert err.message == "Tensor name: b has inconsistent batch size: 3 expecting: 2"
    err = error_of(jt.predict_response, {"a": np.float32(1)}, jt.ROW)
    assert err.message == "Tensor name: a has no shape information "


def test_examples_with_context_and_feature_kinds():
    request = classification_pb2.ClassificationRequest()
    jt.fill_input(
        jt.parse_json(
            b'{"signature_name": "s", "context": {"c": "t"}, "examples": [{"f": [1.5, 2.5], "i": true, "b": {"b64": "AA=="}}]}'
        ),
        request,
    )
    assert request.model_spec.signature_name == "s"
    context = request.input.example_list_with_context.context.features.feature
    assert context["c"].bytes_list.value == [b"t"]
    feature = request.input.example_list_with_context.examples[0].features.feature
    assert list(feature["f"].float_list.value) == [1.5, 2.5]
    assert list(feature["i"].int64_list.value) == [1]
    assert list(feature["b"].bytes_list.value) == [b"\x00"]


@pytest.mark.parametrize(
    "body,message",
    [
        (b'{"examples": [{"f": [1, 2.5]}]}', "Unexpected element type in feature: f expecting type: int64"),
        (
            b'{"examples": [{"f": [18446744073709551615]}]}',
            "Feature: f has uint64_t element. Only int64_t is supported.",
        ),
        (b'{"examples": [{"f": null}]}', "Feature: f has element with unexpected JSON type: Null"),
        (b'{"examples": [{"f": [[1]]}]}', "Feature: f has element with unexpected JSON type: Array"),
        (b'{"examples": []}', "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array"),
    ],
)
def test_example_errors(body, message):
    assert error_of(jt.fill_input, jt.parse_json(body), regression_pb2.RegressionRequest()).message == message


def test_classification_and_regression_layouts():
    result = classification_pb2.ClassificationResult()
    classes = result.classifications.add().classes
    classes.add(label="a", score=0.25)
    classes.add(label="b", score=0.75)
    assert jt.classification_response(result) == b'{\n    "results": [[["a", 0.25], ["b", 0.75]]\n    ]\n}'
    regression = regression_pb2.RegressionResult()
    regression.regressions.add(value=1.0)
    assert jt.regression_response(regression) == b'{\n    "results": [1.0]\n}'
    assert jt.error_response('bad "x"\n') == b'{\n    "error": "bad \\"x\\"\\n"\n}'
