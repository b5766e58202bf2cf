"""JSON <-> tensors for the REST API, as TF Serving's util/json_tensor.cc.

Requests: the row ("instances") and columnar ("inputs") predict formats,
{"b64": ...} binary strings, type checks against the signature's dtypes,
classify/regress "examples" with an optional "context". Responses:
"predictions"/"outputs" (the output name dropped when there is only one),
"results", {"error": ...}. Reading the body is serving.json_reader's job and
laying out the text, byte for byte as TF Serving does, serving.json_writer's.

Every failure is a ServingError carrying TF Serving's own message. Shapes are
always the lengths of lists actually received, never a number a client wrote,
so nothing is allocated beyond what the body itself holds.
"""

from __future__ import annotations

import base64
import binascii
import itertools

import grpc
import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2

from serving import json_reader
from serving.errors import ServingError, invalid_argument
from serving.json_writer import Writer, debug_string, decimals, quote
from serving.tensors import data_type_of, dtype_name

ROW = "row"
COLUMNAR = "columnar"

_MAX_RANK = 64  # numpy's limit; TensorFlow's own (254) is never reached by real models.

DT = types_pb2


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if type(value) in (int, float):
        return "Number"
    return {str: "String", list: "Array"}.get(type(value), "Object")


# ---------------------------------------------------------------------------
# Parsing


def parse_json(body: bytes) -> dict:
    """Parse a request body like TF Serving: the first JSON value, which must be an object."""
    doc = json_reader.parse(body)
    if type(doc) is not dict:
        raise _format_error(doc, "Is not object")
    return doc


def _format_error(value, *parts) -> ServingError:
    return invalid_argument(f"JSON Value: {debug_string(value)} " + "".join(parts))


def signature_name(doc: dict) -> str:
    """The request's optional "signature_name" ("" when absent)."""
    if "signature_name" not in doc:
        return ""
    name = doc["signature_name"]
    if type(name) is not str:
        raise invalid_argument(
            f"JSON Value: {debug_string(doc)} not formatted correctly. 'signature_name' key must be a string value."
        )
    return name


# ---------------------------------------------------------------------------
# JSON -> tensors


class _Fail(Exception):
    """A FillTensorProto failure, message and code as TF Serving reports it."""

    def __init__(self, message: str, code=grpc.StatusCode.INVALID_ARGUMENT):
        super().__init__(message)
        self.message = message
        self.code = code

    def status_string(self) -> str:
        return f"{self.code.name}: {self.message}"

    def error(self) -> ServingError:
        return ServingError(self.code, self.message)


def _is_b64(value) -> bool:
    return type(value) is dict and len(value) == 1 and type(value.get("b64")) is str


def _b64decode(value) -> bytes:
    text = value["b64"]
    try:
        padded = text + "=" * (-len(text) % 4)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise _Fail("Unable to base64 decode") from None


def _type_error(value, dtype: int) -> _Fail:
    return _Fail(
        f"JSON Value: {debug_string(value)} Type: {_json_type(value)} is not of expected type: {dtype_name(dtype)}"
    )


# dtype -> (numpy dtype, accepted Python types, inclusive int range or None).
_INT32 = (-(2**31), 2**31 - 1)
_NUMERIC = {
    DT.DT_FLOAT: (np.float32, (int, float), None),
    DT.DT_DOUBLE: (np.float64, (int, float), None),
    DT.DT_INT32: (np.int32, (int,), _INT32),
    DT.DT_INT16: (np.int16, (int,), _INT32),
    DT.DT_INT8: (np.int8, (int,), _INT32),
    DT.DT_UINT8: (np.uint8, (int,), _INT32),
    DT.DT_INT64: (np.int64, (int,), (-(2**63), 2**63 - 1)),
    DT.DT_UINT32: (np.uint32, (int,), (0, 2**32 - 1)),
    DT.DT_UINT64: (np.uint64, (int,), (0, 2**64 - 1)),
    DT.DT_BOOL: (np.bool_, (bool,), None),
}


def _leaf_ok(value, types, bounds) -> bool:
    return type(value) in types and (bounds is None or bounds[0] <= value <= bounds[1])


def _convert_leaves(leaves: list, dtype: int) -> np.ndarray:
    """Type-check leaf values against `dtype` and pack them (AddValueToTensor)."""
    if dtype == DT.DT_STRING:
        out = np.empty(len(leaves), dtype=object)
        for i, value in enumerate(leaves):
            if type(value) is str:
                out[i] = value.encode("utf-8", "surrogateescape")
            elif type(value) is dict:
                if not _is_b64(value):
                    raise _Fail(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
                out[i] = _b64decode(value)
            else:
                raise _type_error(value, dtype)
        return out
    spec = _NUMERIC.get(dtype)
    if spec is None:
        for value in leaves:
            if type(value) is dict:
                raise _type_error(value, dtype)
            raise _Fail(
                f"Conversion of JSON Value: {debug_string(value)} to type: {dtype_name(dtype)}",
                grpc.StatusCode.UNIMPLEMENTED,
            )
        return np.empty(0, dtype=np.float32)
    np_dtype, types, bounds = spec
    found = set(map(type, leaves))
    ok = found <= set(types)
    if ok and bounds is not None and leaves:
        ok = bounds[0] <= min(leaves) and max(leaves) <= bounds[1]
    if not ok:
        bad = next(v for v in leaves if not _leaf_ok(v, types, bounds))
        raise _type_error(bad, dtype)
    if dtype in (DT.DT_FLOAT, DT.DT_DOUBLE):
        with np.errstate(over="ignore"):
            return np.array(leaves, dtype=np.float64).astype(np_dtype)
    if dtype == DT.DT_UINT64:
        return np.array(leaves, dtype=np.uint64)
    # Narrow integer types wrap like TensorFlow's static_cast from int_val.
    return np.array(leaves, dtype=np.int64).astype(np_dtype)


def _dense(value, dtype: int) -> np.ndarray:
    """One JSON value as a dense tensor (GetDenseTensorShape + FillTensorProto)."""
    shape = []
    probe = value
    while type(probe) is list:
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    rank = len(shape)
    if rank > _MAX_RANK:
        raise _Fail(f"JSON Value nests lists {rank} deep; tensors have at most {_MAX_RANK} dimensions")
    items = [value]
    for level, want in enumerate(shape):
        # Check a whole level at C speed; walk it item by item only to name a culprit.
        if set(map(type, items)) != {list} or set(map(len, items)) != {want}:
            for item in items:
                if type(item) is not list:
                    raise _Fail(
                        f"JSON Value: {debug_string(item)} found at incorrect level: "
                        f"{level + 1} in the JSON DOM. Expected at level: {rank}"
                    )
                if len(item) != want:
                    raise _Fail(
                        f"Encountered list at unexpected size: {len(item)} at level: {level} expected size: {want}"
                    )
        items = list(itertools.chain.from_iterable(items))
    if any(type(v) is list for v in items):
        raise _Fail(f"Encountered list at unexpected level: {rank} expected < {rank}")
    if dtype != DT.DT_STRING:
        bad = next((v for v in items if type(v) is dict), None)
        if bad is not None:
            raise _type_error(bad, dtype)
    return _convert_leaves(items, dtype).reshape(shape)


def _shape_string(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _rows_slow(instances: list, names: list[str], dtypes: dict, named: bool) -> None:
    """Replay TF Serving's item-by-item "instances" walk to find its first error.

    Only called when the fast whole-list conversion failed; always raises.
    """
    sizes: dict[str, int] = {}
    shapes: dict[str, tuple] = {}
    input_names = sorted(names)

    def add(item, name: str):
        if name not in dtypes:
            raise _Fail(f"JSON object: does not have named input: {name}")
        tensor = _dense(item, dtypes[name])
        if name not in sizes:
            sizes[name], shapes[name] = tensor.size, tensor.shape
        elif sizes[name] != tensor.size:
            raise _Fail(f"Expecting tensor size: {sizes[name]} but got: {tensor.size}")
        elif shapes[name] != tensor.shape:
            raise _Fail(f"Expecting shape {_shape_string(shapes[name])} but got: {_shape_string(tensor.shape)}")

    for index, elem in enumerate(instances):
        is_object = type(elem) is dict and not _is_b64(elem)
        if named:
            if not is_object:
                raise invalid_argument(f"Expecting object but got list at item {index} of input list")
            for name, item in elem.items():
                try:
                    add(item, name)
                except _Fail as fail:
                    raise invalid_argument(
                        f"Failed to process element: {index} key: {name} of 'instances' list. "
                        f"Error: {fail.status_string()}"
                    ) from None
            if sorted(elem) != input_names:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{debug_string(elem)} keys must be equal to: {','.join(input_names)}"
                )
        else:
            if is_object:
                raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
            try:
                add(elem, input_names[0])
            except _Fail as fail:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. Error: {fail.status_string()}"
                ) from None
    raise AssertionError("instances failed to convert but no element is at fault")


def _from_instances(instances: list, dtypes: dict) -> dict[str, np.ndarray]:
    names = sorted(dtypes)
    first = instances[0]
    if type(first) is not dict and len(names) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map"
        )
    named = type(first) is dict and not _is_b64(first)
    # Fast path: the whole list (or one key across all objects) converted as
    # one tensor. It succeeds exactly when TF Serving's per-item walk does.
    try:
        if not named:
            return {names[0]: _dense(instances, dtypes[names[0]])}
        wanted = set(names)
        if all(type(e) is dict and e.keys() == wanted for e in instances):
            return {n: _dense([e[n] for e in instances], dtypes[n]) for n in names}
    except _Fail:
        pass
    _rows_slow(instances, names, dtypes, named)


def _from_inputs(value, dtypes: dict) -> dict[str, np.ndarray]:
    names = sorted(dtypes)
    try:
        if type(value) is not dict or _is_b64(value):
            if len(names) > 1:
                raise invalid_argument(
                    "inputs is a plain value/list, but expecting an object as multiple "
                    "input tensors required as per tensorinfo_map"
                )
            return {names[0]: _dense(value, dtypes[names[0]])}
        out = {}
        for name in names:
            if name not in value:
                raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
            out[name] = _dense(value[name], dtypes[name])
        return out
    except _Fail as fail:
        raise fail.error() from None


def predict_inputs(doc: dict, input_dtypes: dict[str, int], signature: str = "") -> tuple[dict, str]:
    """The input tensors of a parsed :predict body, and its format (ROW or COLUMNAR).

    `input_dtypes` maps the signature's input names to DataType enum values.
    """
    if not input_dtypes:
        raise invalid_argument(f"Failed to get input map for signature: {signature or 'DEFAULT'}")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise _format_error(doc, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ")
    if has_instances:
        instances = doc["instances"]
        if type(instances) is not list:
            raise _format_error(doc, "Expecting 'instances' to be an list/array")
        if not instances:
            raise _format_error(doc, "No values in 'instances' array")
        return _from_instances(instances, input_dtypes), ROW
    if has_inputs:
        return _from_inputs(doc["inputs"], input_dtypes), COLUMNAR
    raise invalid_argument("Missing 'inputs' or 'instances' key")


# ---------------------------------------------------------------------------
# Classify / regress requests


def _feature_kind(feature: feature_pb2.Feature) -> str | None:
    return feature.WhichOneof("kind")


def _add_to_feature(value, name: str, feature: feature_pb2.Feature) -> None:
    def need(kind: str):
        current = _feature_kind(feature)
        if current is not None and current != kind:
            kind_str = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}[current]
            raise invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind_str}")

    kind = type(value)
    if value is None or kind is list or (kind is dict and not _is_b64(value)):
        raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}")
    if kind is bool:
        need("int64_list")
        feature.int64_list.value.append(int(value))
    elif kind is dict:
        need("bytes_list")
        try:
            feature.bytes_list.value.append(_b64decode(value))
        except _Fail as fail:
            raise fail.error() from None
    elif kind is str:
        need("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8", "surrogateescape"))
    elif kind is float:
        need("float_list")
        feature.float_list.value.append(value)
    else:
        need("int64_list")
        if value > 2**63 - 1:
            raise invalid_argument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(value)


def _example(value, example: example_pb2.Example) -> None:
    if type(value) is not dict:
        raise invalid_argument(f"Example must be JSON object but got JSON {_json_type(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if type(content) is list else (content,):
            _add_to_feature(item, name, feature)
        example.features.feature[name].CopyFrom(feature)


def fill_input(doc: dict, request) -> None:
    """Fill a Classification/RegressionRequest's `input` from a parsed body."""
    request.model_spec.signature_name = signature_name(doc)
    has_context = "context" in doc
    if has_context:
        _example(doc["context"], request.input.example_list_with_context.context)
    if "examples" not in doc:
        raise _format_error(doc, "When method is classify, key 'examples' is expected and was not found")
    examples = doc["examples"]
    if type(examples) is not list:
        raise _format_error(doc, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(doc, "'examples' value is an empty array")
    target = request.input.example_list_with_context.examples if has_context else request.input.example_list.examples
    for value in examples:
        _example(value, target.add())


# ---------------------------------------------------------------------------
# Tensors -> JSON


def _single_line_items(scalars: list[str], shape: tuple) -> list[str]:
    """The single-line JSON texts of a tensor's sub-tensors along dimension 0."""
    items = scalars
    for k in range(len(shape) - 1, 0, -1):
        width = shape[k]
        groups = int(np.prod(shape[:k], dtype=np.int64))
        items = ["[" + ", ".join(items[g * width : (g + 1) * width]) + "]" for g in range(groups)]
    return items


def _scalar_strings(array: np.ndarray) -> list[str]:
    """Each element rendered as TF Serving writes it (AddSingleValueAndAdvance)."""
    kind = array.dtype
    if kind == np.float32:
        return decimals(array, 9, np.float32)
    if kind == np.float64:
        return decimals(array, 17, np.float64)
    if kind == np.bool_:
        return ["true" if v else "false" for v in array.ravel().tolist()]
    if kind in (np.int8, np.int16, np.int32, np.uint8, np.int64, np.uint32, np.uint64):
        return [str(v) for v in array.ravel().tolist()]
    if kind == np.object_:
        return [quote(v.decode("utf-8", "surrogateescape")) for v in array.ravel().tolist()]
    raise invalid_argument(f"Failed to write JSON value for tensor type: {dtype_name(data_type_of(array))}")


def _write_tensor(w: Writer, scalars: list[str], shape: tuple, dim: int, offset: int) -> int:
    """AddTensorValues: nested arrays from dimension `dim` on; returns the new offset."""
    if dim >= len(shape):
        w.raw(scalars[offset])
        return offset + 1
    if dim == len(shape) - 1:
        w.scalars(scalars[offset : offset + shape[dim]])
        return offset + shape[dim]
    w.start(True)
    for _ in range(shape[dim]):
        offset = _write_tensor(w, scalars, shape, dim + 1, offset)
    w.end()
    return offset


def _write_bytes_tensor(w: Writer, array: np.ndarray, dim: int, offset_box: list) -> None:
    """Like _write_tensor, for `*_bytes` outputs written as {"b64": ...} objects."""
    flat = array.ravel()
    shape = array.shape

    def one():
        w.start(False)
        w.key("b64")
        w.string(base64.b64encode(flat[offset_box[0]]).decode("ascii"))
        w.end()
        offset_box[0] += 1

    def rec(d):
        if d >= len(shape):
            one()
            return
        w.start(True)
        for _ in range(shape[d]):
            rec(d + 1)
        w.end()

    rec(dim)


def predict_response(outputs: dict[str, np.ndarray], fmt: str) -> bytes:
    """The :predict response body (MakeJsonFromTensors)."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    multiple = len(names) > 1
    w = Writer()
    w.start(False)
    if fmt == ROW:
        batch = -1
        for name in names:
            shape = outputs[name].shape
            if not shape:
                raise invalid_argument(f"Tensor name: {name} has no shape information ")
            if batch >= 0 and batch != shape[0]:
                raise invalid_argument(
                    f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch}"
                )
            batch = shape[0]
        if not any(outputs[n].dtype == object and n.endswith("_bytes") for n in names):
            return _row_response_fast(outputs, names, batch)
        rendered = {n: _tensor_renderer(outputs[n], n) for n in names}
        w.key("predictions")
        w.start(True)
        for item in range(batch):
            if multiple:
                w.start(False)
            w.single_line = True
            for name in names:
                if multiple:
                    w.key(name)
                rendered[name](w, item)
            w.single_line = False
            if multiple:
                w.end()
        w.end()
    else:
        w.key("outputs")
        if multiple:
            w.start(False)
        for name in names:
            if multiple:
                w.key(name)
            _tensor_renderer(outputs[name], name, batched=False)(w, None)
        if multiple:
            w.end()
    w.end()
    return w.bytes()


def _row_response_fast(outputs: dict[str, np.ndarray], names: list[str], batch: int) -> bytes:
    """The row-format body built as whole strings; the PrettyWriter's exact output
    for tensors without {"b64": ...} objects (whose layout depends on depth)."""
    rows = {n: _single_line_items(_scalar_strings(outputs[n]), outputs[n].shape) for n in names}
    if len(names) == 1:
        body = ", ".join(rows[names[0]])
    else:
        keyed = [(quote(n), rows[n]) for n in names]
        body = ",".join(
            "\n        {" + ",".join(f"\n            {key}: {items[i]}" for key, items in keyed) + "\n        }"
            for i in range(batch)
        )
    text = '{\n    "predictions": [' + body + ("\n    ]" if batch else "]") + "\n}"
    return text.encode("utf-8", "surrogateescape")


def _tensor_renderer(array: np.ndarray, name: str, batched: bool = True):
    """A function writing row `item` of `array` (or all of it when not batched)."""
    if array.dtype == object and name.endswith("_bytes"):
        row_size = int(np.prod(array.shape[1:], dtype=np.int64)) if batched else 0

        def write_bytes(w, item):
            _write_bytes_tensor(w, array, 1 if batched else 0, [item * row_size if batched else 0])

        return write_bytes
    scalars = _scalar_strings(array)
    row_size = int(np.prod(array.shape[1:], dtype=np.int64)) if array.ndim else 1

    def write(w, item):
        if batched:
            _write_tensor(w, scalars, array.shape, 1, item * row_size)
        else:
            _write_tensor(w, scalars, array.shape, 0, 0)

    return write


def classification_response(result) -> bytes:
    """The :classify response body from a ClassificationResult."""
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    w = Writer()
    w.start(False)
    w.key("results")
    w.start(True)
    for classifications in result.classifications:
        w.single_line = True
        w.start(True)
        scores = decimals(np.array([c.score for c in classifications.classes], dtype=np.float32), 9, np.float32)
        for cls, score in zip(classifications.classes, scores, strict=True):
            w.start(True)
            w.string(cls.label)
            w.raw(score)
            w.end()
        w.end()
        w.single_line = False
    w.end()
    w.end()
    return w.bytes()


def regression_response(result) -> bytes:
    """The :regress response body from a RegressionResult."""
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    w = Writer()
    w.start(False)
    w.key("results")
    w.single_line = True
    w.scalars(decimals(np.array([r.value for r in result.regressions], dtype=np.float32), 9, np.float32))
    w.single_line = False
    w.end()
    return w.bytes()


def error_response(message: str) -> bytes:
    """{"error": message} as TF Serving writes it."""
    w = Writer()
    w.start(False)
    w.key("error")
    w.string(message)
    w.end()
    return w.bytes()
